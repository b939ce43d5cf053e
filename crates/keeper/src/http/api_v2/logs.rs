//! `/api/v2/zoom-oauth-credential-logs/` and `/api/v2/zoom-oauth-app-logs/`: what
//! happened to credentials (their connection logs) and to apps (their app logs),
//! newest first. Read-only; no line holds a token or a secret.

use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    id_filter, list_url, route_both, time_filter, uuid_of, Listing, RecallCaller, RecallErrorBody,
    RecallListParams, RecallPage, TAG,
};
use crate::core::ids::IdKind;
use crate::domain::{apps, connections};
use crate::http::apps::timestamp;
use crate::http::error::ApiError;
use crate::http::extract::ApiQuery;
use crate::http::pagination::List;
use crate::http::AppState;
use crate::storage::{AppEventFilter, AppEventRow, ConnectionEventFilter, ConnectionEventRow};

pub const CREDENTIAL_LOGS: &str = "/api/v2/zoom-oauth-credential-logs/";
pub const APP_LOGS: &str = "/api/v2/zoom-oauth-app-logs/";

const CREDENTIAL_LOG_LISTING: Listing = Listing {
    list: List::ConnectionEvents,
    time_field: "created_at",
    lowest_id: "0",
};
const APP_LOG_LISTING: Listing = Listing {
    list: List::AppEvents,
    time_field: "created_at",
    lowest_id: "0",
};

pub fn routes() -> Router<AppState> {
    let router = route_both(Router::new(), CREDENTIAL_LOGS, get(list_credential_logs));
    route_both(router, APP_LOGS, get(list_app_logs))
}

/// One line of a credential's log.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"credential": "c10b2c3d-4e5f-8a6b-8c7d-8e9f0a1b2c3d", "kind": "token_refreshed", "message": "Zoom issued a new access token; the rotated refresh token was saved.", "created_at": "2026-12-01T09:30:00Z"}))]
pub struct CredentialLog {
    /// The credential's UUID.
    #[schema(format = "uuid")]
    pub credential: String,
    /// What happened, in a sentence a person can act on.
    #[schema(max_length = 2000)]
    pub message: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// What kind of line it is, e.g. `created`, `token_refreshed`, `disconnected`
    /// (a zoomkeeper addition).
    #[schema(value_type = super::super::schema_enums::ConnectionEventKindDoc)]
    pub kind: String,
}

impl From<&ConnectionEventRow> for CredentialLog {
    fn from(row: &ConnectionEventRow) -> Self {
        CredentialLog {
            credential: uuid_of(IdKind::Connection, &row.connection_id),
            message: row.message.clone(),
            created_at: timestamp(row.created_at),
            kind: row.kind.clone(),
        }
    }
}

/// One line of an app's log.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"oauth_app": "a10b2c3d-4e5f-8a6b-8c7d-8e9f0a1b2c3d", "kind": "url_validated", "message": "Zoom validated this app's event notification endpoint URL.", "created_at": "2026-12-01T09:30:00Z"}))]
pub struct AppLog {
    /// The app's UUID.
    #[schema(format = "uuid")]
    pub oauth_app: String,
    /// What happened, in a sentence a person can act on.
    #[schema(max_length = 2000)]
    pub message: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// What kind of line it is, e.g. `created`, `url_validated`,
    /// `unverified_webhook` (a zoomkeeper addition).
    #[schema(value_type = super::super::schema_enums::AppLogKindDoc)]
    pub kind: String,
}

impl From<&AppEventRow> for AppLog {
    fn from(row: &AppEventRow) -> Self {
        AppLog {
            oauth_app: uuid_of(IdKind::App, &row.app_id),
            message: row.message.clone(),
            created_at: timestamp(row.created_at),
            kind: row.kind.clone(),
        }
    }
}

/// Filters of `GET /api/v2/zoom-oauth-credential-logs/`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CredentialLogFilterParams {
    /// The credential's UUID.
    pub credential: Option<String>,
    pub created_at_after: Option<String>,
    pub created_at_before: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    pub paging: RecallListParams,
}

/// Filters of `GET /api/v2/zoom-oauth-app-logs/`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AppLogFilterParams {
    /// The app's UUID.
    pub oauth_app: Option<String>,
    pub created_at_after: Option<String>,
    pub created_at_before: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    pub paging: RecallListParams,
}

/// List Zoom OAuth Credential Logs: warnings, errors and changes of credentials.
#[utoipa::path(
    get, path = "/api/v2/zoom-oauth-credential-logs/", tag = TAG,
    operation_id = "zoom_oauth_credential_logs_list",
    params(CredentialLogFilterParams, RecallListParams),
    responses(
        (status = 200, description = "A page of log lines", body = RecallPage<CredentialLog>),
        (status = 400, description = "A bad filter, ordering or cursor", body = RecallErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_credential_logs(
    State(state): State<AppState>,
    RecallCaller(caller): RecallCaller,
    RawQuery(query): RawQuery,
    ApiQuery(params): ApiQuery<CredentialLogFilterParams>,
) -> Result<Json<RecallPage<CredentialLog>>, ApiError> {
    let asked = params.paging.page_request(CREDENTIAL_LOG_LISTING)?;
    let Some(connection_id) = id_filter(
        IdKind::Connection,
        "credential",
        params.credential.as_deref(),
    )?
    .matching() else {
        return Ok(Json(RecallPage::empty()));
    };
    let filter = ConnectionEventFilter {
        connection_id,
        created_after: time_filter("created_at_after", params.created_at_after.as_deref())?,
        created_before: time_filter("created_at_before", params.created_at_before.as_deref())?,
    };
    let page = connections::log(&state.keeper, &caller.project_id, &filter, &asked.request)
        .await
        .map_err(ApiError::from)?;
    Ok(Json(RecallPage::of(
        CREDENTIAL_LOG_LISTING.list,
        &list_url(&state, CREDENTIAL_LOGS, query.as_deref()),
        &asked,
        page,
        |e| (e.created_at, e.id.to_string()),
        |row| CredentialLog::from(row),
    )))
}

/// List Zoom OAuth App Logs: warnings, errors and changes of apps.
#[utoipa::path(
    get, path = "/api/v2/zoom-oauth-app-logs/", tag = TAG,
    operation_id = "zoom_oauth_app_logs_list",
    params(AppLogFilterParams, RecallListParams),
    responses(
        (status = 200, description = "A page of log lines", body = RecallPage<AppLog>),
        (status = 400, description = "A bad filter, ordering or cursor", body = RecallErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_app_logs(
    State(state): State<AppState>,
    RecallCaller(caller): RecallCaller,
    RawQuery(query): RawQuery,
    ApiQuery(params): ApiQuery<AppLogFilterParams>,
) -> Result<Json<RecallPage<AppLog>>, ApiError> {
    let asked = params.paging.page_request(APP_LOG_LISTING)?;
    let Some(app_id) = id_filter(IdKind::App, "oauth_app", params.oauth_app.as_deref())?.matching()
    else {
        return Ok(Json(RecallPage::empty()));
    };
    let filter = AppEventFilter {
        app_id,
        created_after: time_filter("created_at_after", params.created_at_after.as_deref())?,
        created_before: time_filter("created_at_before", params.created_at_before.as_deref())?,
    };
    let page = apps::log(
        &*state.keeper.store,
        &caller.project_id,
        &filter,
        &asked.request,
    )
    .await
    .map_err(ApiError::from)?;
    Ok(Json(RecallPage::of(
        APP_LOG_LISTING.list,
        &list_url(&state, APP_LOGS, query.as_deref()),
        &asked,
        page,
        |e| (e.created_at, e.id.to_string()),
        |row| AppLog::from(row),
    )))
}
