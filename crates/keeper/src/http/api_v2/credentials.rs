//! `/api/v2/zoom-oauth-credentials/`: Recall's Zoom OAuth credentials — zoomkeeper's
//! connections — over [`crate::domain::connections`] and the token broker.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    id_filter, id_from_path, list_url, route_both, time_filter, uuid_of, IdFilter, Listing,
    RecallCaller, RecallErrorBody, RecallListParams, RecallPage, TAG,
};
use crate::core::ids::IdKind;
use crate::domain::connections::{self, ConnectionError, FilterInput, NewConnection};
use crate::domain::token_callbacks::{self, NewCallbackConnection};
use crate::domain::tokens::{self, TokenError};
use crate::http::apps::timestamp;
use crate::http::error::{ApiError, FieldErrors};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery, OptionalJson};
use crate::http::pagination::List;
use crate::http::AppState;
use crate::storage::{ConnectionRow, ConnectionState, MeetingSyncStatus};
use crate::Keeper;

pub const PATH: &str = "/api/v2/zoom-oauth-credentials/";
const WHAT: &str = "Zoom OAuth credential";

pub(super) const LISTING: Listing = Listing {
    list: List::Connections,
    time_field: "created_at",
    lowest_id: "",
};

pub fn routes() -> Router<AppState> {
    let mut router = route_both(
        Router::new(),
        PATH,
        get(list_credentials).post(create_credential),
    );
    for (path, handler) in [
        (
            "/api/v2/zoom-oauth-credentials/{id}/",
            get(get_credential).delete(delete_credential),
        ),
        (
            "/api/v2/zoom-oauth-credentials/{id}/access-token/",
            get(access_token),
        ),
        (
            "/api/v2/zoom-oauth-credentials/{id}/sync-meetings/",
            post(sync_meetings),
        ),
        (
            "/api/v2/zoom-oauth-credentials/{id}/validate/",
            post(validate),
        ),
    ] {
        router = route_both(router, path, handler);
    }
    router
}

/// Recall's `ZoomAuthorizationCode`. (No `Debug`: it holds a code.)
#[derive(Deserialize, ToSchema)]
pub struct AuthorizationCode {
    /// The `code` Zoom sent to your redirect URI. Works once, within 5 minutes.
    #[schema(min_length = 1)]
    pub code: String,
    /// Exactly the redirect_uri of the authorize request, trailing slash included.
    #[schema(min_length = 1)]
    pub redirect_uri: String,
    /// The PKCE code verifier, when the authorize request carried a challenge.
    #[serde(default)]
    pub code_verifier: Option<String>,
}

/// Body of `POST /api/v2/zoom-oauth-credentials/`: `oauth_app` and either
/// `authorization_code` (zoomkeeper keeps the grant) or `access_token_callback_url`
/// (your server keeps it and hands out access tokens). (No `Debug`: it holds a code.)
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"oauth_app": "a10b2c3d-4e5f-8a6b-8c7d-8e9f0a1b2c3d", "authorization_code": {"code": "<the code Zoom sent to your redirect URI>", "redirect_uri": "https://app.example.com/zoom/callback"}}))]
pub struct CreateCredentialRequest {
    /// The app's UUID.
    #[schema(example = "a10b2c3d-4e5f-8a6b-8c7d-8e9f0a1b2c3d")]
    #[schema(format = "uuid")]
    pub oauth_app: String,
    #[serde(default)]
    pub authorization_code: Option<AuthorizationCode>,
    /// Where zoomkeeper GETs a Zoom access token (the plain-text body) for this
    /// user whenever it needs one; at most 200 characters.
    #[serde(default)]
    #[schema(max_length = 200)]
    #[schema(format = "uri")]
    pub access_token_callback_url: Option<String>,
}

/// `healthy` while the credential works; `unhealthy` once Zoom refused its grant
/// (the user uninstalled the app, or the authorisation was revoked).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CredentialStatus {
    Healthy,
    Unhealthy,
}

/// A Zoom OAuth credential as Recall shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "c10b2c3d-4e5f-8a6b-8c7d-8e9f0a1b2c3d", "oauth_app": "a10b2c3d-4e5f-8a6b-8c7d-8e9f0a1b2c3d", "user_id": "z8yCxjabcdEFGHfp8uQ", "account_id": "AbCdEfGhIjKlMnOpQrStUv", "status": "healthy", "meeting_sync_status": "completed", "access_token_callback_url": null, "created_at": "2026-12-01T09:30:00Z", "zoomkeeper_id": "zoc_q7w8e9r0t1y2u3i4"}))]
pub struct RecallCredential {
    #[schema(example = "c10b2c3d-4e5f-8a6b-8c7d-8e9f0a1b2c3d")]
    #[schema(format = "uuid")]
    pub id: String,
    /// The app's UUID.
    #[schema(format = "uuid")]
    pub oauth_app: String,
    pub status: CredentialStatus,
    /// The Zoom user who authorised the app.
    pub user_id: Option<String>,
    /// The Zoom account of that user.
    pub account_id: Option<String>,
    /// The callback URL of a credential whose tokens come from your server, with
    /// the values of its query string (which often hold secrets) shown as `***`;
    /// null otherwise.
    pub access_token_callback_url: Option<String>,
    #[schema(value_type = String, example = "completed")]
    pub meeting_sync_status: MeetingSyncStatus,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The same credential's id in `/api/v1` (a zoomkeeper addition).
    #[schema(example = "zoc_a1b2c3d4e5f6g7h8")]
    #[schema(pattern = "^zoc_[A-Za-z0-9]{16}$")]
    pub zoomkeeper_id: String,
}

impl RecallCredential {
    pub fn new(row: &ConnectionRow, keeper: &Keeper) -> RecallCredential {
        RecallCredential {
            id: uuid_of(IdKind::Connection, &row.id),
            oauth_app: uuid_of(IdKind::App, &row.app_id),
            status: match row.state {
                ConnectionState::Connected => CredentialStatus::Healthy,
                ConnectionState::Disconnected => CredentialStatus::Unhealthy,
            },
            user_id: Some(row.user_id.clone()).filter(|u| !u.is_empty()),
            account_id: Some(row.account_id.clone()).filter(|a| !a.is_empty()),
            access_token_callback_url: token_callbacks::shown_url(keeper, row),
            meeting_sync_status: MeetingSyncStatus::of(row),
            created_at: timestamp(row.created_at),
            zoomkeeper_id: row.id.clone(),
        }
    }
}

/// Recall's answer to a second credential for a Zoom user who has one.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"detail": "A Zoom OAuth Credential already exists for this OAuth App and Zoom user (user_id: z8yCxjabcdEFGHfp8uQ). A Zoom OAuth App can have at most one Zoom OAuth Credential per authorized Zoom user: find it with ?user_id=z8yCxjabcdEFGHfp8uQ, and delete it first to register this one instead.", "code": "zoom_user_already_connected", "conflicting_zoom_user_id": "z8yCxjabcdEFGHfp8uQ", "conflicting_zoom_account_id": null}))]
pub struct CredentialConflictBody {
    pub detail: String,
    pub code: String,
    /// The Zoom user whose credential already exists.
    pub conflicting_zoom_user_id: Option<String>,
    pub conflicting_zoom_account_id: Option<String>,
}

/// Recall's 400 for a second credential of a Zoom user in the app.
fn conflict(user_id: String) -> Response {
    let body = CredentialConflictBody {
        detail: format!(
            "A Zoom OAuth Credential already exists for this OAuth App and Zoom user (user_id: {user_id}). A Zoom OAuth App can have at most one Zoom OAuth Credential per authorized Zoom user: find it with ?user_id={user_id}, and delete it first to register this one instead."
        ),
        code: "zoom_user_already_connected".to_owned(),
        conflicting_zoom_user_id: Some(user_id),
        conflicting_zoom_account_id: None,
    };
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// Recall's 400 for a second credential of a Zoom account in an account-level app.
fn account_conflict(account_id: String) -> Response {
    let body = CredentialConflictBody {
        detail: format!(
            "A Zoom OAuth Credential already exists for this OAuth App and Zoom account (account_id: {account_id}). An account-level Zoom OAuth App can have at most one Zoom OAuth Credential per authorized Zoom account: find it with ?account_id={account_id}, and delete it first to register this one instead."
        ),
        code: "zoom_account_already_connected".to_owned(),
        conflicting_zoom_user_id: None,
        conflicting_zoom_account_id: Some(account_id),
    };
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// `{"token", "expires_at"}`: a Zoom access token good for at least 120 s.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"token": "<Zoom access token>", "expires_at": "2026-12-01T10:29:00Z"}))]
pub struct RecallAccessToken {
    pub token: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// Filters of `GET /api/v2/zoom-oauth-credentials/`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CredentialFilterParams {
    pub account_id: Option<String>,
    pub user_id: Option<String>,
    /// The app's UUID.
    pub oauth_app: Option<String>,
    /// `healthy` or `unhealthy`.
    pub status: Option<String>,
    /// `not_started`, `in_progress`, `completed` or `failed`.
    pub meeting_sync_status: Option<String>,
    pub created_at_after: Option<String>,
    pub created_at_before: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    pub paging: RecallListParams,
}

/// A connection error in Recall's words (credentials, `oauth_app`, the fields of
/// `authorization_code`).
fn credential_error(e: ConnectionError) -> ApiError {
    match e {
        ConnectionError::NotFound => ApiError::NotFound { what: WHAT },
        ConnectionError::Invalid(fields) => {
            let renamed: FieldErrors = fields
                .into_iter()
                .map(|(field, problems)| {
                    let field = match field.as_str() {
                        "zoom_oauth_app_id" => "oauth_app".to_owned(),
                        "authorization_code" => "authorization_code.code".to_owned(),
                        "redirect_uri" | "code_verifier" => format!("authorization_code.{field}"),
                        _ => field,
                    };
                    (field, problems)
                })
                .collect();
            ApiError::invalid_fields(renamed)
        }
        ConnectionError::Disconnected(failure) => token_error(TokenError::Disconnected(failure)),
        ConnectionError::LocalRecordingOff => ApiError::BadRequest {
            code: "capability_not_enabled",
            message: "Meeting sync serves local recording tokens, and this credential's user did not grant the scopes for them.".to_owned(),
        },
        other => other.into(),
    }
}

/// A token error in Recall's words.
fn token_error(e: TokenError) -> ApiError {
    match e {
        TokenError::NotFound => ApiError::NotFound { what: WHAT },
        TokenError::Disconnected(failure) => ApiError::Conflict {
            code: "credential_unhealthy",
            message: format!(
                "This credential is unhealthy{} Have the user authorise the app again, then create the credential again with the new authorization code (it is updated in place).",
                failure.map_or_else(|| ".".to_owned(), |f| format!(": {}", f.error.trim_end_matches(" The user must authorise the app again.")))
            ),
        },
        other => other.into(),
    }
}

/// Create Zoom OAuth Credential.
///
/// With `authorization_code`, the code is exchanged at Zoom and the grant kept
/// here. Re-authorising a user who already has a credential in the app updates
/// that credential in place (same id, `healthy` again) and answers 201 with it, as
/// Recall does today: Zoom keeps only the newest grant of a user, so the older
/// "400, delete it and try again" answer would lose the user's authorisation.
#[utoipa::path(
    post, path = "/api/v2/zoom-oauth-credentials/", tag = TAG,
    operation_id = "zoom_oauth_credentials_create",
    request_body = CreateCredentialRequest,
    responses(
        (status = 201, description = "Created, or the user's existing credential updated in place (same id)", body = RecallCredential),
        (status = 400, description = "Invalid input, or Zoom rejected the code; a callback credential for a user who has one (`conflicting_zoom_user_id`)", body = CredentialConflictBody),
        (status = 429, description = "Zoom's rate limit, with Retry-After", body = RecallErrorBody),
        (status = 502, description = "Zoom unreachable", body = RecallErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_credential(
    State(state): State<AppState>,
    RecallCaller(caller): RecallCaller,
    ApiJson(body): ApiJson<CreateCredentialRequest>,
) -> Result<(StatusCode, Json<RecallCredential>), Response> {
    let app_id = match id_filter(IdKind::App, "oauth_app", Some(&body.oauth_app)) {
        Ok(IdFilter::Is(id)) => id,
        Ok(_) => {
            return Err(ApiError::field(
                "oauth_app",
                "No Zoom OAuth app with this id exists in your project.",
            )
            .into_response())
        }
        Err(e) => return Err(e.into_response()),
    };
    let callback = body
        .access_token_callback_url
        .filter(|u| !u.trim().is_empty());
    let row = match (body.authorization_code, callback) {
        (Some(code), None) => {
            let new = NewConnection {
                authorization_code: SecretString::from(code.code),
                redirect_uri: code.redirect_uri,
                app_id: Some(app_id),
                code_verifier: code.code_verifier.map(SecretString::from),
                is_local_recording_token_supported: None,
                is_onbehalf_token_supported: None,
                metadata: None,
                deduplication_key: None,
                announce_new: false,
                capabilities_from_scopes: true,
            };
            connections::create(&state.keeper, &caller.project_id, new)
                .await
                .map_err(|e| credential_error(e).into_response())?
        }
        (None, Some(url)) => {
            let new = NewCallbackConnection {
                app_id: Some(app_id),
                url,
                metadata: None,
                is_local_recording_token_supported: true,
                is_onbehalf_token_supported: true,
            };
            match token_callbacks::create_from_callback(&state.keeper, &caller.project_id, new)
                .await
            {
                Ok(row) => row,
                Err(ConnectionError::UserAlreadyConnected { user_id, .. }) => {
                    return Err(conflict(user_id))
                }
                Err(ConnectionError::AccountAlreadyConnected { account_id, .. }) => {
                    return Err(account_conflict(account_id))
                }
                Err(e) => return Err(credential_error(e).into_response()),
            }
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest {
                code: "invalid_request",
                message: "Send either authorization_code (zoomkeeper keeps the user's grant) or access_token_callback_url (your server hands out the user's access tokens), not both.".to_owned(),
            }
            .into_response())
        }
        (None, None) => {
            return Err(ApiError::BadRequest {
                code: "invalid_request",
                message: "Send authorization_code ({code, redirect_uri, code_verifier?} from Zoom's redirect), or access_token_callback_url.".to_owned(),
            }
            .into_response())
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(RecallCredential::new(&row, &state.keeper)),
    ))
}

/// List Zoom OAuth Credentials.
#[utoipa::path(
    get, path = "/api/v2/zoom-oauth-credentials/", tag = TAG,
    operation_id = "zoom_oauth_credentials_list",
    params(CredentialFilterParams, RecallListParams),
    responses(
        (status = 200, description = "A page of credentials", body = RecallPage<RecallCredential>),
        (status = 400, description = "A bad filter, ordering or cursor", body = RecallErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_credentials(
    State(state): State<AppState>,
    RecallCaller(caller): RecallCaller,
    RawQuery(query): RawQuery,
    ApiQuery(params): ApiQuery<CredentialFilterParams>,
) -> Result<Json<RecallPage<RecallCredential>>, ApiError> {
    let asked = params.paging.page_request(LISTING)?;
    let Some(app_id) = id_filter(IdKind::App, "oauth_app", params.oauth_app.as_deref())?.matching()
    else {
        return Ok(Json(RecallPage::empty()));
    };
    let state_filter = match params.status.as_deref().map(str::trim) {
        None | Some("") => None,
        Some("healthy") => Some("connected".to_owned()),
        Some("unhealthy") => Some("disconnected".to_owned()),
        Some(_) => return Err(ApiError::field("status", "Must be healthy or unhealthy.")),
    };
    let meeting_sync_status = match params.meeting_sync_status.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(MeetingSyncStatus::parse(s).ok_or_else(|| {
            ApiError::field(
                "meeting_sync_status",
                "Must be not_started, in_progress, completed or failed.",
            )
        })?),
    };
    let filter = FilterInput {
        app_id,
        user_id: params.user_id,
        account_id: params.account_id,
        state: state_filter,
        created_after: time_filter("created_at_after", params.created_at_after.as_deref())?,
        created_before: time_filter("created_at_before", params.created_at_before.as_deref())?,
        meeting_sync_status,
        ..FilterInput::default()
    };
    let page = connections::list(&state.keeper, &caller.project_id, filter, &asked.request)
        .await
        .map_err(credential_error)?;
    Ok(Json(RecallPage::of(
        LISTING.list,
        &list_url(&state, PATH, query.as_deref()),
        &asked,
        page,
        |c| (c.created_at, c.id.clone()),
        |row| RecallCredential::new(row, &state.keeper),
    )))
}

/// Retrieve Zoom OAuth Credential.
#[utoipa::path(
    get, path = "/api/v2/zoom-oauth-credentials/{id}/", tag = TAG,
    operation_id = "zoom_oauth_credentials_retrieve",
    params(("id" = String, Path, description = "The credential's UUID")),
    responses(
        (status = 200, description = "The credential", body = RecallCredential),
        (status = 404, description = "No such credential in this project", body = RecallErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get_credential(
    State(state): State<AppState>,
    RecallCaller(caller): RecallCaller,
    ApiPath(id): ApiPath,
) -> Result<Json<RecallCredential>, ApiError> {
    let id = id_from_path(IdKind::Connection, &id, WHAT)?;
    let row = connections::get(&state.keeper, &caller.project_id, &id)
        .await
        .map_err(credential_error)?;
    Ok(Json(RecallCredential::new(&row, &state.keeper)))
}

/// Delete Zoom OAuth Credential: ends the user's authorisation of the app (the
/// grant is revoked at Zoom) and removes its meeting mappings.
#[utoipa::path(
    delete, path = "/api/v2/zoom-oauth-credentials/{id}/", tag = TAG,
    operation_id = "zoom_oauth_credentials_destroy",
    params(("id" = String, Path, description = "The credential's UUID")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such credential in this project", body = RecallErrorBody),
        (status = 503, description = "Its token is being refreshed; retry shortly", body = RecallErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn delete_credential(
    State(state): State<AppState>,
    RecallCaller(caller): RecallCaller,
    ApiPath(id): ApiPath,
) -> Result<StatusCode, ApiError> {
    let id = id_from_path(IdKind::Connection, &id, WHAT)?;
    connections::delete(&state.keeper, &caller.project_id, &id)
        .await
        .map_err(credential_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Get Zoom OAuth Credential Access Token: a Zoom access token valid for at least
/// 120 more seconds, refreshed first if needed (one refresh however many ask at once).
#[utoipa::path(
    get, path = "/api/v2/zoom-oauth-credentials/{id}/access-token/", tag = TAG,
    operation_id = "zoom_oauth_credentials_access_token_retrieve",
    params(("id" = String, Path, description = "The credential's UUID")),
    responses(
        (status = 200, description = "The token", body = RecallAccessToken),
        (status = 404, description = "No such credential in this project", body = RecallErrorBody),
        (status = 409, description = "The credential is unhealthy (`credential_unhealthy`)", body = RecallErrorBody),
        (status = 429, description = "Zoom's rate limit, with Retry-After", body = RecallErrorBody),
        (status = 502, description = "Zoom unreachable", body = RecallErrorBody),
        (status = 503, description = "A refresh running elsewhere took too long; retry", body = RecallErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn access_token(
    State(state): State<AppState>,
    RecallCaller(caller): RecallCaller,
    ApiPath(id): ApiPath,
) -> Result<Json<RecallAccessToken>, ApiError> {
    let id = id_from_path(IdKind::Connection, &id, WHAT)?;
    let token = tokens::access_token(&state.keeper, &caller.project_id, &id)
        .await
        .map_err(token_error)?;
    Ok(Json(RecallAccessToken {
        token: token.token.expose_secret().to_owned(),
        expires_at: timestamp(token.expires_at),
    }))
}

/// Sync Zoom OAuth Credential Meetings: asks for a meeting sync now. It runs in
/// the background; `meeting_sync_status` shows `in_progress` until it is done.
#[utoipa::path(
    post, path = "/api/v2/zoom-oauth-credentials/{id}/sync-meetings/", tag = TAG,
    operation_id = "zoom_oauth_credentials_sync_meetings_create",
    params(("id" = String, Path, description = "The credential's UUID")),
    responses(
        (status = 200, description = "Sync scheduled; no response body"),
        (status = 400, description = "The credential cannot sync (no local recording scopes)", body = RecallErrorBody),
        (status = 404, description = "No such credential in this project", body = RecallErrorBody),
        (status = 409, description = "The credential is unhealthy", body = RecallErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn sync_meetings(
    State(state): State<AppState>,
    RecallCaller(caller): RecallCaller,
    ApiPath(id): ApiPath,
    OptionalJson(_body): OptionalJson<serde_json::Map<String, serde_json::Value>>,
) -> Result<StatusCode, ApiError> {
    let id = id_from_path(IdKind::Connection, &id, WHAT)?;
    connections::schedule_sync(&state.keeper, &caller.project_id, &id)
        .await
        .map_err(credential_error)?;
    Ok(StatusCode::OK)
}

/// Validate Zoom OAuth Credential: checks with Zoom now that the credential works,
/// and re-enables one that was unhealthy only because Zoom refused the app's
/// previous client secret. Answers 200 with no body whatever it finds; read
/// `status` afterwards (the outcome is also in the credential logs).
#[utoipa::path(
    post, path = "/api/v2/zoom-oauth-credentials/{id}/validate/", tag = TAG,
    operation_id = "zoom_oauth_credentials_validate_create",
    params(("id" = String, Path, description = "The credential's UUID")),
    responses(
        (status = 200, description = "Checked; no response body"),
        (status = 404, description = "No such credential in this project", body = RecallErrorBody),
        (status = 429, description = "Zoom's rate limit, with Retry-After", body = RecallErrorBody),
        (status = 502, description = "Zoom unreachable: nothing was decided", body = RecallErrorBody),
        (status = 503, description = "Its token is being refreshed; retry shortly", body = RecallErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn validate(
    State(state): State<AppState>,
    RecallCaller(caller): RecallCaller,
    ApiPath(id): ApiPath,
    OptionalJson(_body): OptionalJson<serde_json::Map<String, serde_json::Value>>,
) -> Result<StatusCode, ApiError> {
    let id = id_from_path(IdKind::Connection, &id, WHAT)?;
    connections::validate(&state.keeper, &caller.project_id, &id)
        .await
        .map_err(token_error)?;
    Ok(StatusCode::OK)
}
