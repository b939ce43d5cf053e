//! `/api/v2/zoom-oauth-apps/`: Recall's Zoom OAuth apps, over [`crate::domain::apps`].

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    id_from_path, list_url, route_both, time_filter, uuid_of, Listing, RecallCaller,
    RecallErrorBody, RecallListParams, RecallPage, TAG,
};
use crate::core::ids::IdKind;
use crate::domain::apps::{self, AppChange, NewApp};
use crate::http::apps::{timestamp, Kind};
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::pagination::List;
use crate::http::AppState;
use crate::storage::{AppFilter, AppRow};

pub const PATH: &str = "/api/v2/zoom-oauth-apps/";
const WHAT: &str = "Zoom OAuth app";

pub(super) const LISTING: Listing = Listing {
    list: List::Apps,
    time_field: "created_at",
    lowest_id: "",
};

pub fn routes() -> Router<AppState> {
    let router = route_both(Router::new(), PATH, get(list_apps).post(create_app));
    route_both(
        router,
        "/api/v2/zoom-oauth-apps/{id}/",
        get(get_app).patch(update_app).delete(delete_app),
    )
}

/// Body of `POST /api/v2/zoom-oauth-apps/`. (No `Debug`: it holds secrets.)
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"kind": "user_level", "client_id": "AbCdEfGhIjKlMnOpQrSt", "client_secret": "<the app's client secret>", "webhook_secret": "<the Event Subscription's Secret Token>"}))]
pub struct CreateRecallAppRequest {
    pub kind: Kind,
    /// The app's Client ID from the Zoom App Marketplace.
    #[schema(max_length = 200)]
    #[schema(min_length = 1)]
    pub client_id: String,
    /// The app's Client Secret; checked against Zoom before it is stored.
    #[schema(min_length = 1)]
    pub client_secret: String,
    /// The app's Secret Token for Event Subscriptions.
    pub webhook_secret: String,
}

/// Body of `PATCH /api/v2/zoom-oauth-apps/{id}/`. (No `Debug`: it holds secrets.)
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"webhook_secret": "<the new Secret Token>"}))]
pub struct UpdateRecallAppRequest {
    /// A new client secret, checked against Zoom like on create.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// A new webhook secret (Zoom's Secret Token).
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// Read-only: accepted only when equal to the app's.
    #[serde(default)]
    pub client_id: Option<String>,
}

/// A Zoom OAuth app as Recall shows it. Its secrets are never returned (Recall's
/// reference lists `client_secret` and `webhook_secret` in responses; zoomkeeper
/// never sends a secret back).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "a10b2c3d-4e5f-8a6b-8c7d-8e9f0a1b2c3d", "kind": "user_level", "client_id": "AbCdEfGhIjKlMnOpQrSt", "created_at": "2026-12-01T09:30:00Z", "webhook_last_validation": "2026-12-01T09:30:00Z", "webhook_url": "https://zoomkeeper.example.com/api/v2/zoom-oauth-apps/a10b2c3d-4e5f-8a6b-8c7d-8e9f0a1b2c3d/webhook", "zoomkeeper_id": "zoa_a1b2c3d4e5f6g7h8"}))]
pub struct RecallApp {
    #[schema(example = "a10b2c3d-4e5f-8a6b-8c7d-8e9f0a1b2c3d")]
    #[schema(format = "uuid")]
    pub id: String,
    pub kind: Kind,
    pub client_id: String,
    /// When Zoom last validated the app's event notification endpoint URL.
    #[schema(format = DateTime)]
    pub webhook_last_validation: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Paste this into the Zoom app's Event Subscription (zoomkeeper addition).
    #[schema(format = "uri")]
    pub webhook_url: String,
    /// The same app's id in `/api/v1` (zoomkeeper addition).
    #[schema(example = "zoa_a1b2c3d4e5f6g7h8")]
    #[schema(pattern = "^zoa_[A-Za-z0-9]{16}$")]
    pub zoomkeeper_id: String,
}

impl RecallApp {
    pub fn new(row: &AppRow, public_url: &str) -> RecallApp {
        let id = uuid_of(IdKind::App, &row.id);
        RecallApp {
            webhook_url: format!("{public_url}/api/v2/zoom-oauth-apps/{id}/webhook"),
            id,
            kind: row.kind.into(),
            client_id: row.client_id.clone(),
            webhook_last_validation: row.webhook_last_validation_at.map(timestamp),
            created_at: timestamp(row.created_at),
            zoomkeeper_id: row.id.clone(),
        }
    }
}

/// Filters of `GET /api/v2/zoom-oauth-apps/`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AppFilterParams {
    pub client_id: Option<String>,
    /// `user_level` or `account_level`.
    pub kind: Option<String>,
    /// Created at or after (ISO 8601).
    pub created_at_after: Option<String>,
    /// Created at or before (ISO 8601).
    pub created_at_before: Option<String>,
    pub webhook_last_validation_after: Option<String>,
    pub webhook_last_validation_before: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    pub paging: RecallListParams,
}

fn secret(s: String) -> SecretString {
    SecretString::from(s)
}

/// Create Zoom OAuth App.
#[utoipa::path(
    post, path = "/api/v2/zoom-oauth-apps/", tag = TAG,
    operation_id = "zoom_oauth_apps_create",
    request_body = CreateRecallAppRequest,
    responses(
        (status = 201, description = "Created", body = RecallApp),
        (status = 400, description = "Invalid input, or Zoom rejected the credentials", body = RecallErrorBody),
        (status = 409, description = "An app with this client_id exists in the project", body = RecallErrorBody),
        (status = 502, description = "Zoom unreachable", body = RecallErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_app(
    State(state): State<AppState>,
    RecallCaller(caller): RecallCaller,
    ApiJson(body): ApiJson<CreateRecallAppRequest>,
) -> Result<(StatusCode, Json<RecallApp>), ApiError> {
    let new = NewApp {
        client_id: body.client_id,
        client_secret: secret(body.client_secret),
        webhook_secret: Some(secret(body.webhook_secret)),
        kind: body.kind.into(),
    };
    let row = apps::create(&state.keeper, &caller.project_id, new).await?;
    Ok((
        StatusCode::CREATED,
        Json(RecallApp::new(&row, &state.public_url)),
    ))
}

/// List Zoom OAuth Apps.
#[utoipa::path(
    get, path = "/api/v2/zoom-oauth-apps/", tag = TAG,
    operation_id = "zoom_oauth_apps_list",
    params(AppFilterParams, RecallListParams),
    responses(
        (status = 200, description = "A page of apps", body = RecallPage<RecallApp>),
        (status = 400, description = "A bad filter, ordering or cursor", body = RecallErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_apps(
    State(state): State<AppState>,
    RecallCaller(caller): RecallCaller,
    RawQuery(query): RawQuery,
    ApiQuery(params): ApiQuery<AppFilterParams>,
) -> Result<Json<RecallPage<RecallApp>>, ApiError> {
    let asked = params.paging.page_request(LISTING)?;
    let kind = match params.kind.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(k) => Some(
            crate::storage::AppKind::parse(k)
                .ok_or_else(|| ApiError::field("kind", "Must be user_level or account_level."))?,
        ),
    };
    let filter = AppFilter {
        client_id: params
            .client_id
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty()),
        kind,
        created_after: time_filter("created_at_after", params.created_at_after.as_deref())?,
        created_before: time_filter("created_at_before", params.created_at_before.as_deref())?,
        validated_after: time_filter(
            "webhook_last_validation_after",
            params.webhook_last_validation_after.as_deref(),
        )?,
        validated_before: time_filter(
            "webhook_last_validation_before",
            params.webhook_last_validation_before.as_deref(),
        )?,
    };
    let page = apps::list_where(
        &*state.keeper.store,
        &caller.project_id,
        &filter,
        &asked.request,
    )
    .await?;
    Ok(Json(RecallPage::of(
        LISTING.list,
        &list_url(&state, PATH, query.as_deref()),
        &asked,
        page,
        |a| (a.created_at, a.id.clone()),
        |a| RecallApp::new(a, &state.public_url),
    )))
}

/// Retrieve Zoom OAuth App.
#[utoipa::path(
    get, path = "/api/v2/zoom-oauth-apps/{id}/", tag = TAG,
    operation_id = "zoom_oauth_apps_retrieve",
    params(("id" = String, Path, description = "The app's UUID")),
    responses(
        (status = 200, description = "The app", body = RecallApp),
        (status = 404, description = "No such app in this project", body = RecallErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get_app(
    State(state): State<AppState>,
    RecallCaller(caller): RecallCaller,
    ApiPath(id): ApiPath,
) -> Result<Json<RecallApp>, ApiError> {
    let id = id_from_path(IdKind::App, &id, WHAT)?;
    let row = apps::get(&*state.keeper.store, &caller.project_id, &id).await?;
    Ok(Json(RecallApp::new(&row, &state.public_url)))
}

/// Update Zoom OAuth App: its client secret or webhook secret.
///
/// A new client secret is checked against Zoom first; connections that were
/// disconnected because Zoom refused the old one are then re-checked in the
/// background.
#[utoipa::path(
    patch, path = "/api/v2/zoom-oauth-apps/{id}/", tag = TAG,
    operation_id = "zoom_oauth_apps_partial_update",
    params(("id" = String, Path, description = "The app's UUID")),
    request_body = UpdateRecallAppRequest,
    responses(
        (status = 200, description = "The updated app", body = RecallApp),
        (status = 400, description = "Invalid input, or Zoom rejected the new secret", body = RecallErrorBody),
        (status = 404, description = "No such app in this project", body = RecallErrorBody),
        (status = 502, description = "Zoom unreachable", body = RecallErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn update_app(
    State(state): State<AppState>,
    RecallCaller(caller): RecallCaller,
    ApiPath(id): ApiPath,
    ApiJson(body): ApiJson<UpdateRecallAppRequest>,
) -> Result<Json<RecallApp>, ApiError> {
    let id = id_from_path(IdKind::App, &id, WHAT)?;
    let change = AppChange {
        client_id: body.client_id,
        client_secret: body.client_secret.map(secret),
        webhook_secret: body.webhook_secret.map(|s| Some(secret(s))),
    };
    let row = apps::update(&state.keeper, &caller.project_id, &id, change).await?;
    Ok(Json(RecallApp::new(&row, &state.public_url)))
}

/// Delete Zoom OAuth App (one without credentials).
#[utoipa::path(
    delete, path = "/api/v2/zoom-oauth-apps/{id}/", tag = TAG,
    operation_id = "zoom_oauth_apps_destroy",
    params(("id" = String, Path, description = "The app's UUID")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such app in this project", body = RecallErrorBody),
        (status = 409, description = "The app still has credentials: delete them first", body = RecallErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn delete_app(
    State(state): State<AppState>,
    RecallCaller(caller): RecallCaller,
    ApiPath(id): ApiPath,
) -> Result<StatusCode, ApiError> {
    let id = id_from_path(IdKind::App, &id, WHAT)?;
    apps::delete(&*state.keeper.store, &caller.project_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
