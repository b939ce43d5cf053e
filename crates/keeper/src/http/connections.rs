//! `/api/v1/zoom_oauth_connections`: thin handlers over [`crate::domain::connections`] and
//! the token broker ([`crate::domain::tokens`]).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::apps::{timestamp, DeletedResponse};
use super::error::{ApiError, ErrorBody, FieldErrors, ZOOM_OAUTH_CONNECTION};
use super::extract::{ApiJson, ApiPath, ApiQuery, OptionalJson};
use super::pagination::{List, ListPage, ListParams};
use super::AppState;
use crate::domain::api_keys::Caller;
use crate::domain::connections::{
    self, ConnectionChange, ConnectionError, FilterInput, NewConnection,
};
use crate::domain::tokens::{self, TokenError, UserToken};
use crate::storage::{ConnectionEventRow, ConnectionRow, FailureData};

pub const PATH: &str = "/api/v1/zoom_oauth_connections";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(PATH, get(list_connections).post(create_connection))
        .route(
            "/api/v1/zoom_oauth_connections/{id}",
            get(get_connection)
                .patch(update_connection)
                .delete(delete_connection),
        )
        .route(
            "/api/v1/zoom_oauth_connections/{id}/events",
            get(list_events),
        )
        .route("/api/v1/zoom_oauth_connections/{id}/sync", post(sync))
        .route(
            "/api/v1/zoom_oauth_connections/{id}/access_token",
            post(access_token),
        )
        .route(
            "/api/v1/zoom_oauth_connections/{id}/zak_token",
            post(zak_token),
        )
        .route(
            "/api/v1/zoom_oauth_connections/{id}/onbehalf_token",
            post(onbehalf_token),
        )
}

/// Body of `POST /api/v1/zoom_oauth_connections`. (No `Debug`: it holds a code.)
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"authorization_code": "<the code Zoom sent to your redirect URI>", "redirect_uri": "https://app.example.com/zoom/callback", "zoom_oauth_app_id": "zoa_a1b2c3d4e5f6g7h8", "metadata": {"customer_id": "cus_123"}, "deduplication_key": "user-42", "is_onbehalf_token_supported": true}))]
pub struct CreateConnectionRequest {
    /// The `code` Zoom sent to your redirect URI. Works once, within 5 minutes.
    #[schema(min_length = 1)]
    pub authorization_code: String,
    /// Exactly the redirect_uri of the authorize request.
    #[schema(min_length = 1)]
    pub redirect_uri: String,
    /// Which app the user authorised; may be left out when the project has exactly one.
    #[serde(default)]
    #[schema(pattern = "^zoa_[A-Za-z0-9]{16}$")]
    pub zoom_oauth_app_id: Option<String>,
    /// The PKCE code verifier, when the authorize request carried a challenge.
    #[serde(default)]
    pub code_verifier: Option<String>,
    /// Default true.
    #[serde(default)]
    pub is_local_recording_token_supported: Option<bool>,
    /// Default false.
    #[serde(default)]
    pub is_onbehalf_token_supported: Option<bool>,
    /// A non-empty object of string values, at most 1,000 characters as JSON.
    #[serde(default)]
    #[schema(schema_with = non_empty_metadata)]
    pub metadata: Option<Value>,
    /// Unique per app. A create with a key already used by a connection of another
    /// Zoom user re-binds that connection to the new user.
    #[serde(default)]
    pub deduplication_key: Option<String>,
}

/// Body of `PATCH /api/v1/zoom_oauth_connections/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"is_onbehalf_token_supported": true, "metadata": {"customer_id": "cus_123", "plan": "team"}}))]
pub struct UpdateConnectionRequest {
    /// New metadata, or null to remove it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<std::collections::HashMap<String, String>>, nullable)]
    pub metadata: Option<Option<Value>>,
    /// New key, or null to remove it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub deduplication_key: Option<Option<String>>,
    #[serde(default)]
    pub is_local_recording_token_supported: Option<bool>,
    #[serde(default)]
    pub is_onbehalf_token_supported: Option<bool>,
}

/// Tells "field absent" (outer `None`) from "field is null" (`Some(None)`).
pub(super) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Body of `POST …/{id}/onbehalf_token` (may be left out).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"meeting_id": "85746065432"}))]
pub struct OnbehalfTokenRequest {
    /// The meeting the bot will join (9 to 11 digits), as text or a number.
    #[serde(default, deserialize_with = "meeting_number")]
    #[schema(value_type = Option<String>, example = "85746065432")]
    pub meeting_id: Option<String>,
}

fn meeting_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Text(String),
        Int(u64),
    }
    Ok(Option::<Number>::deserialize(d)
        .map_err(|_| serde::de::Error::custom("must be a meeting number (text or number)"))?
        .map(|n| match n {
            Number::Text(s) => s.trim().to_owned(),
            Number::Int(n) => n.to_string(),
        }))
}

/// `connection_failure_data`: why a connection is disconnected.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailureDataResponse {
    /// A sentence a person can act on.
    pub error: String,
    /// e.g. `invalid_grant`, `app_deauthorized`.
    pub code: String,
    #[schema(format = DateTime)]
    pub timestamp: String,
}

impl From<&FailureData> for FailureDataResponse {
    fn from(f: &FailureData) -> Self {
        FailureDataResponse {
            error: f.error.clone(),
            code: f.code.clone(),
            timestamp: timestamp(f.timestamp),
        }
    }
}

/// A Zoom OAuth connection. Tokens are never returned here.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "zoc_q7w8e9r0t1y2u3i4", "zoom_oauth_app_id": "zoa_a1b2c3d4e5f6g7h8", "user_id": "z8yCxjabcdEFGHfp8uQ", "account_id": "AbCdEfGhIjKlMnOpQrStUv", "email": "ada@example.com", "state": "connected", "connection_failure_data": null, "is_local_recording_token_supported": true, "is_onbehalf_token_supported": true, "scopes": ["meeting:read:list_meetings", "user:read:zak", "meeting:read:local_recording_token"], "metadata": {"customer_id": "cus_123"}, "deduplication_key": "user-42", "pmi": "4155551234", "last_attempted_sync_at": "2026-12-01T09:30:00Z", "last_successful_sync_at": "2026-12-01T09:30:00Z", "account_sync": null, "created_at": "2026-12-01T09:30:00Z", "updated_at": "2026-12-01T09:30:00Z"}))]
pub struct ConnectionResponse {
    #[schema(example = "zoc_a1b2c3d4e5f6g7h8")]
    #[schema(pattern = "^zoc_[A-Za-z0-9]{16}$")]
    pub id: String,
    #[schema(pattern = "^zoa_[A-Za-z0-9]{16}$")]
    pub zoom_oauth_app_id: String,
    /// Zoom's user id.
    pub user_id: String,
    pub account_id: String,
    pub email: Option<String>,
    pub pmi: Option<String>,
    #[schema(value_type = super::schema_enums::ConnectionStateDoc, example = "connected")]
    pub state: String,
    #[schema(value_type = Option<std::collections::HashMap<String, String>>)]
    pub metadata: Option<Value>,
    pub deduplication_key: Option<String>,
    pub is_local_recording_token_supported: bool,
    pub is_onbehalf_token_supported: bool,
    /// Scopes the user granted.
    pub scopes: Vec<String>,
    pub connection_failure_data: Option<FailureDataResponse>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[schema(format = DateTime)]
    pub last_successful_sync_at: Option<String>,
    #[schema(format = DateTime)]
    pub last_attempted_sync_at: Option<String>,
    /// An account-level connection's account-wide meeting sync: how far the pass
    /// under way (or the last one) got. Null for connections that sync only their
    /// own user's meetings.
    pub account_sync: Option<AccountSyncResponse>,
}

/// How far an account-wide meeting sync has read the Zoom account.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountSyncResponse {
    /// A pass is under way (it resumes where it stopped after a rate limit or a
    /// restart); false once it completed.
    pub in_progress: bool,
    /// Users whose meetings the pass has read.
    #[schema(example = 120)]
    pub users_done: i64,
    /// Active users of the Zoom account, once the pass has listed them.
    #[schema(example = 1000)]
    pub users_total: Option<i64>,
    /// When the pass under way began.
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
}

impl From<&ConnectionRow> for ConnectionResponse {
    fn from(row: &ConnectionRow) -> Self {
        ConnectionResponse {
            id: row.id.clone(),
            zoom_oauth_app_id: row.app_id.clone(),
            user_id: row.user_id.clone(),
            account_id: row.account_id.clone(),
            email: row.email.clone(),
            pmi: row.pmi.clone(),
            state: row.state.as_str().to_owned(),
            metadata: row.metadata.clone(),
            deduplication_key: row.deduplication_key.clone(),
            is_local_recording_token_supported: row.is_local_recording_token_supported,
            is_onbehalf_token_supported: row.is_onbehalf_token_supported,
            scopes: row.scopes.clone(),
            connection_failure_data: row.connection_failure_data.as_ref().map(Into::into),
            created_at: timestamp(row.created_at),
            updated_at: timestamp(row.updated_at),
            last_successful_sync_at: row.last_successful_sync_at.map(timestamp),
            last_attempted_sync_at: row.last_attempted_sync_at.map(timestamp),
            account_sync: row.sync_users_done.map(|users_done| AccountSyncResponse {
                in_progress: row.sync_pass_started_at.is_some(),
                users_done,
                users_total: row.sync_users_total,
                started_at: row.sync_pass_started_at.map(timestamp),
            }),
        }
    }
}

/// A line of a connection's log.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": 981, "kind": "token_refreshed", "message": "Zoom issued a new access token; the rotated refresh token was saved.", "data": null, "created_at": "2026-12-01T09:30:00Z"}))]
pub struct ConnectionEventResponse {
    pub id: i64,
    /// `created`, `reconnected`, `rebound`, `token_refreshed`, `disconnected`, …
    #[schema(value_type = super::schema_enums::ConnectionEventKindDoc)]
    pub kind: String,
    pub message: String,
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<&ConnectionEventRow> for ConnectionEventResponse {
    fn from(e: &ConnectionEventRow) -> Self {
        ConnectionEventResponse {
            id: e.id,
            kind: e.kind.clone(),
            message: e.message.clone(),
            data: e.data.clone(),
            created_at: timestamp(e.created_at),
        }
    }
}

/// A Zoom access token. (No `Debug`: it holds the token.)
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"token": "<Zoom access token>", "expires_at": "2026-12-01T10:29:00Z"}))]
pub struct AccessTokenResponse {
    pub token: String,
    /// Valid until then; at least 120 s from the answer.
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// A token minted by Zoom. (No `Debug`: it holds the token.)
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"token": "<ZAK or onbehalf token>"}))]
pub struct TokenResponse {
    pub token: String,
}

/// Query of `GET /api/v1/zoom_oauth_connections`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConnectionListParams {
    /// Opaque cursor from a previous page's `next` or `previous` link.
    pub cursor: Option<String>,
    /// Items per page, 1 to 100 (default 25).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub page_size: Option<String>,
    pub zoom_oauth_app_id: Option<String>,
    /// Zoom's user id.
    pub user_id: Option<String>,
    pub account_id: Option<String>,
    #[param(value_type = Option<super::schema_enums::ConnectionStateDoc>)]
    pub state: Option<String>,
    pub deduplication_key: Option<String>,
    /// `key=value`: connections whose metadata has this key with this value.
    #[param(example = "customer=acme")]
    pub metadata: Option<String>,
}

impl ConnectionListParams {
    /// The filters as a query string, to keep them in pagination links.
    fn filter_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("zoom_oauth_app_id", &self.zoom_oauth_app_id),
            ("user_id", &self.user_id),
            ("account_id", &self.account_id),
            ("state", &self.state),
            ("deduplication_key", &self.deduplication_key),
            ("metadata", &self.metadata),
        ] {
            if let Some(v) = value.as_deref().filter(|v| !v.trim().is_empty()) {
                q.append_pair(name, v);
            }
        }
        q.finish()
    }
}

fn zoom_error(e: zoom::ZoomError) -> ApiError {
    match e {
        zoom::ZoomError::RateLimited { retry_after } => ApiError::ZoomRateLimited {
            retry_after_secs: retry_secs(retry_after.unwrap_or(std::time::Duration::from_secs(1))),
        },
        zoom::ZoomError::Unavailable { .. } | zoom::ZoomError::BadResponse { .. } => {
            ApiError::ZoomUnavailable
        }
        other => ApiError::ZoomRefused {
            message: other.description(),
        },
    }
}

fn retry_secs(d: std::time::Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

impl From<ConnectionError> for ApiError {
    fn from(e: ConnectionError) -> ApiError {
        match e {
            ConnectionError::Invalid(fields) => ApiError::invalid_fields(fields),
            ConnectionError::NotFound => ApiError::NotFound {
                what: ZOOM_OAUTH_CONNECTION,
            },
            ConnectionError::AuthorizationCodeRejected(reason) => ApiError::BadRequest {
                code: "authorization_code_rejected",
                message: format!("Error exchanging access code for tokens. Please check that the authorization code and redirect URI are correct. Zoom said: {reason}. A code works once and for 5 minutes, and redirect_uri must be exactly the one of the authorize request; have the user authorise again."),
            },
            ConnectionError::MissingScopes(missing) => ApiError::BadRequest {
                code: "missing_scopes",
                // Attendee's sentence, its list written as Python's repr (sorted:
                // Attendee's own order varies).
                message: format!(
                    "The authorization is missing the following required scopes: [{}]. Add them to the app in the Zoom App Marketplace and have the user authorise again.",
                    {
                        let mut missing = missing;
                        missing.sort();
                        missing.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ")
                    }
                ),
            },
            ConnectionError::NotAccountAdmin => ApiError::BadRequest {
                code: "not_account_admin",
                message: "This app is account-level: it serves every user of a Zoom account, so an owner or admin of that account must authorise it. The user who authorised it is a member; ask an account admin to authorise the app.".to_owned(),
            },
            ConnectionError::ZoomUserNotActive(status) => ApiError::BadRequest {
                code: "zoom_user_not_active",
                message: format!(
                    "The user is not active. Its Zoom status is {}; only active Zoom users can be connected.",
                    if status.is_empty() { "unknown" } else { &status }
                ),
            },
            ConnectionError::Superseded => ApiError::Conflict {
                code: "authorization_superseded",
                message: "The user authorised the app again before this authorisation could be stored; Zoom keeps only the newest, so this one no longer works. The request made with the newer authorization code creates or updates the connection.".to_owned(),
            },
            ConnectionError::Busy => TokenError::Busy.into(),
            ConnectionError::DeduplicationKeyTaken => ApiError::Conflict {
                code: "deduplication_key_taken",
                message: "Another connection of this app already has this deduplication_key.".to_owned(),
            },
            ConnectionError::UserAlreadyConnected { user_id, connection_id } => ApiError::Conflict {
                code: "zoom_user_already_connected",
                message: format!("Zoom user {user_id} already has a connection to this app ({connection_id}); a user has one connection per app. Delete that one first to connect the user another way."),
            },
            ConnectionError::AccountAlreadyConnected { account_id, connection_id } => ApiError::Conflict {
                code: "zoom_account_already_connected",
                message: format!("Zoom account {account_id} already has a connection to this account-level app ({connection_id}); an account has one. Delete that one first to connect the account another way."),
            },
            ConnectionError::TokenCallbackFailed(message) => ApiError::BadRequest {
                code: "access_token_callback_failed",
                message,
            },
            ConnectionError::Disconnected(failure) => TokenError::Disconnected(failure).into(),
            ConnectionError::LocalRecordingOff => ApiError::BadRequest {
                code: "capability_not_enabled",
                message: "Meeting sync serves local recording tokens; this connection does not have that capability. Turn it on with PATCH (is_local_recording_token_supported: true) first.".to_owned(),
            },
            ConnectionError::Zoom(e) => zoom_error(e),
            ConnectionError::Store(e) => e.into(),
            ConnectionError::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> ApiError {
        match e {
            TokenError::NotFound => ApiError::NotFound {
                what: ZOOM_OAUTH_CONNECTION,
            },
            TokenError::Disconnected(failure) => ApiError::Conflict {
                code: "connection_disconnected",
                message: match failure {
                    Some(f) => format!("This connection is disconnected: {} The user must authorise the app again (create the connection again from a new authorization code).", f.error.trim_end_matches(" The user must authorise the app again.")),
                    None => "This connection is disconnected. The user must authorise the app again (create the connection again from a new authorization code).".to_owned(),
                },
            },
            TokenError::CapabilityNotEnabled(capability) => ApiError::BadRequest {
                code: "capability_not_enabled",
                message: format!("This connection does not have the {capability} capability. Turn it on with PATCH (is_{capability}_token_supported: true) first."),
            },
            TokenError::UserNotInAccount => ApiError::NotFound {
                what: "Zoom user in this connection's account",
            },
            TokenError::InvalidMeetingId => {
                let mut fields = FieldErrors::new();
                fields.insert(
                    "meeting_id".to_owned(),
                    vec!["Must be a Zoom meeting number: 9 to 11 digits.".to_owned()],
                );
                ApiError::validation(
                    "invalid_request",
                    "meeting_id: Must be a Zoom meeting number: 9 to 11 digits.",
                    fields,
                )
            }
            TokenError::RateLimited { retry_after } => ApiError::ZoomRateLimited {
                retry_after_secs: retry_secs(retry_after),
            },
            TokenError::ZoomUnavailable(_) => ApiError::ZoomUnavailable,
            TokenError::ZoomRefused(message) => ApiError::ZoomRefused { message },
            TokenError::Busy | TokenError::LostFence => ApiError::Busy {
                message: "This connection's token is being refreshed by another instance; try again shortly.".to_owned(),
            },
            // 502: the customer's callback stands where Zoom's token endpoint would.
            TokenError::CallbackFailed(message) => ApiError::CallbackFailed { message },
            TokenError::Internal(context) => ApiError::Internal(anyhow::anyhow!(context)),
        }
    }
}

/// Connect a Zoom user from an authorization code.
#[utoipa::path(
    post, path = "/api/v1/zoom_oauth_connections", tag = "Zoom OAuth connections",
    request_body = CreateConnectionRequest,
    responses(
        (status = 201, description = "Created, or the user's existing connection updated in place (same id), or the connection with this deduplication_key re-bound", body = ConnectionResponse),
        (status = 400, description = "Invalid input, `authorization_code_rejected`, `missing_scopes` or `zoom_user_not_active`; nothing is stored", body = ErrorBody),
        (status = 409, description = "The deduplication_key belongs to another connection of this user's app (`deduplication_key_taken`)", body = ErrorBody),
        (status = 429, description = "Zoom's rate limit (`zoom_rate_limited`), with Retry-After", body = ErrorBody),
        (status = 502, description = "Zoom unreachable (`zoom_unavailable`)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_connection(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateConnectionRequest>,
) -> Result<(StatusCode, Json<ConnectionResponse>), ApiError> {
    let new = NewConnection {
        authorization_code: SecretString::from(body.authorization_code),
        redirect_uri: body.redirect_uri,
        app_id: body.zoom_oauth_app_id,
        code_verifier: body.code_verifier.map(SecretString::from),
        is_local_recording_token_supported: body.is_local_recording_token_supported,
        is_onbehalf_token_supported: body.is_onbehalf_token_supported,
        metadata: body.metadata,
        deduplication_key: body.deduplication_key,
        announce_new: false,
        capabilities_from_scopes: false,
    };
    let row = connections::create(&state.keeper, &caller.project_id, new).await?;
    Ok((StatusCode::CREATED, Json((&row).into())))
}

/// List the project's connections, newest first.
#[utoipa::path(
    get, path = "/api/v1/zoom_oauth_connections", tag = "Zoom OAuth connections",
    params(ConnectionListParams),
    responses(
        (status = 200, description = "A page of connections", body = ListPage<ConnectionResponse>),
        (status = 400, description = "Bad filter, page_size or cursor", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_connections(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ConnectionListParams>,
) -> Result<Json<ListPage<ConnectionResponse>>, ApiError> {
    let request = ListParams {
        cursor: params.cursor.clone(),
        page_size: params.page_size.clone(),
    }
    .page_request(List::Connections)?;
    let filter_query = params.filter_query();
    let filter = FilterInput {
        app_id: params.zoom_oauth_app_id,
        user_id: params.user_id,
        account_id: params.account_id,
        state: params.state,
        deduplication_key: params.deduplication_key,
        metadata: params.metadata,
        ..FilterInput::default()
    };
    let page = connections::list(&state.keeper, &caller.project_id, filter, &request).await?;
    let list_url = if filter_query.is_empty() {
        format!("{}{PATH}", state.public_url)
    } else {
        format!("{}{PATH}?{filter_query}", state.public_url)
    };
    Ok(Json(ListPage::of(
        List::Connections,
        &list_url,
        &request,
        &page,
        |c| (c.created_at, c.id.clone()),
        |row| row.into(),
    )))
}

/// Get one connection.
#[utoipa::path(
    get, path = "/api/v1/zoom_oauth_connections/{id}", tag = "Zoom OAuth connections",
    params(("id" = String, Path, description = "Connection id (`zoc_…`)")),
    responses(
        (status = 200, description = "The connection", body = ConnectionResponse),
        (status = 404, description = "No such connection in this project", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get_connection(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
) -> Result<Json<ConnectionResponse>, ApiError> {
    let row = connections::get(&state.keeper, &caller.project_id, &id).await?;
    Ok(Json((&row).into()))
}

/// Change a connection's metadata, deduplication_key or capabilities.
#[utoipa::path(
    patch, path = "/api/v1/zoom_oauth_connections/{id}", tag = "Zoom OAuth connections",
    params(("id" = String, Path, description = "Connection id (`zoc_…`)")),
    request_body = UpdateConnectionRequest,
    responses(
        (status = 200, description = "The updated connection", body = ConnectionResponse),
        (status = 400, description = "Invalid input (e.g. both capabilities off) or `missing_scopes` for a capability turned on", body = ErrorBody),
        (status = 404, description = "No such connection in this project", body = ErrorBody),
        (status = 409, description = "The deduplication_key is taken (`deduplication_key_taken`)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn update_connection(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
    ApiJson(body): ApiJson<UpdateConnectionRequest>,
) -> Result<Json<ConnectionResponse>, ApiError> {
    let change = ConnectionChange {
        metadata: body.metadata,
        deduplication_key: body.deduplication_key,
        is_local_recording_token_supported: body.is_local_recording_token_supported,
        is_onbehalf_token_supported: body.is_onbehalf_token_supported,
    };
    let row = connections::update(&state.keeper, &caller.project_id, &id, change).await?;
    Ok(Json((&row).into()))
}

/// Delete a connection: its meeting index goes with it and its grant is revoked at
/// Zoom (best effort).
#[utoipa::path(
    delete, path = "/api/v1/zoom_oauth_connections/{id}", tag = "Zoom OAuth connections",
    params(("id" = String, Path, description = "Connection id (`zoc_…`)")),
    responses(
        (status = 200, description = "Deleted", body = DeletedResponse),
        (status = 404, description = "No such connection in this project", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn delete_connection(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
) -> Result<Json<DeletedResponse>, ApiError> {
    connections::delete(&state.keeper, &caller.project_id, &id).await?;
    Ok(Json(DeletedResponse { id, deleted: true }))
}

/// The connection's log, newest first.
#[utoipa::path(
    get, path = "/api/v1/zoom_oauth_connections/{id}/events", tag = "Zoom OAuth connections",
    params(("id" = String, Path, description = "Connection id (`zoc_…`)"), ListParams),
    responses(
        (status = 200, description = "A page of events", body = ListPage<ConnectionEventResponse>),
        (status = 400, description = "Bad page_size or cursor", body = ErrorBody),
        (status = 404, description = "No such connection in this project", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<ListPage<ConnectionEventResponse>>, ApiError> {
    let request = params.page_request(List::ConnectionEvents)?;
    let page = connections::events(&state.keeper, &caller.project_id, &id, &request).await?;
    let list_url = format!("{}{PATH}/{id}/events", state.public_url);
    Ok(Json(ListPage::of(
        List::ConnectionEvents,
        &list_url,
        &request,
        &page,
        |e| (e.created_at, e.id.to_string()),
        |row| row.into(),
    )))
}

/// `metadata` on create: a non-empty object of strings, or null.
fn non_empty_metadata() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String)))
        .min_properties(Some(1))
        .description(Some(
            "A non-empty object of string values, at most 1,000 characters as JSON.",
        ))
        .build()
}

/// Accepted sync request.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "zoc_q7w8e9r0t1y2u3i4", "status": "scheduled"}))]
pub struct SyncScheduled {
    #[schema(pattern = "^zoc_[A-Za-z0-9]{16}$")]
    pub id: String,
    /// Always `scheduled`: the meeting sync worker picks it up.
    #[schema(example = "scheduled")]
    pub status: &'static str,
}

/// Schedule a meeting sync of the connection now.
#[utoipa::path(
    post, path = "/api/v1/zoom_oauth_connections/{id}/sync", tag = "Zoom OAuth connections",
    params(("id" = String, Path, description = "Connection id (`zoc_…`)")),
    responses(
        (status = 202, description = "Scheduled", body = SyncScheduled),
        (status = 400, description = "No local recording capability (`capability_not_enabled`)", body = ErrorBody),
        (status = 404, description = "No such connection in this project", body = ErrorBody),
        (status = 409, description = "The connection is disconnected (`connection_disconnected`)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn sync(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
) -> Result<(StatusCode, Json<SyncScheduled>), ApiError> {
    connections::schedule_sync(&state.keeper, &caller.project_id, &id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(SyncScheduled {
            id,
            status: "scheduled",
        }),
    ))
}

/// A Zoom access token for the connection, valid for at least 120 more seconds.
#[utoipa::path(
    post, path = "/api/v1/zoom_oauth_connections/{id}/access_token", tag = "Tokens",
    params(("id" = String, Path, description = "Connection id (`zoc_…`)")),
    responses(
        (status = 200, description = "The token", body = AccessTokenResponse),
        (status = 404, description = "No such connection in this project", body = ErrorBody),
        (status = 409, description = "The connection is disconnected (`connection_disconnected`), with the cause", body = ErrorBody),
        (status = 429, description = "Zoom's rate limit (`zoom_rate_limited`), with Retry-After", body = ErrorBody),
        (status = 502, description = "Zoom unreachable or failing (`zoom_unavailable`)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn access_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
) -> Result<Json<AccessTokenResponse>, ApiError> {
    let token = tokens::access_token(&state.keeper, &caller.project_id, &id).await?;
    Ok(Json(AccessTokenResponse {
        token: token.token.expose_secret().to_owned(),
        expires_at: timestamp(token.expires_at),
    }))
}

/// A ZAK for the connection's user (signs a bot in as that user).
#[utoipa::path(
    post, path = "/api/v1/zoom_oauth_connections/{id}/zak_token", tag = "Tokens",
    params(("id" = String, Path, description = "Connection id (`zoc_…`)")),
    responses(
        (status = 200, description = "The token", body = TokenResponse),
        (status = 404, description = "No such connection in this project", body = ErrorBody),
        (status = 409, description = "The connection is disconnected (`connection_disconnected`)", body = ErrorBody),
        (status = 429, description = "Zoom's rate limit (`zoom_rate_limited`), with Retry-After", body = ErrorBody),
        (status = 502, description = "Zoom unreachable (`zoom_unavailable`) or refused (`zoom_refused`)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn zak_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
) -> Result<Json<TokenResponse>, ApiError> {
    let token = tokens::user_token(&state.keeper, &caller.project_id, &id, UserToken::Zak).await?;
    Ok(Json(TokenResponse {
        token: token.expose_secret().to_owned(),
    }))
}

/// An onbehalf token for the connection's user, optionally bound to a meeting.
#[utoipa::path(
    post, path = "/api/v1/zoom_oauth_connections/{id}/onbehalf_token", tag = "Tokens",
    params(("id" = String, Path, description = "Connection id (`zoc_…`)")),
    request_body(content = Option<OnbehalfTokenRequest>, description = "May be left out"),
    responses(
        (status = 200, description = "The token", body = TokenResponse),
        (status = 400, description = "Bad meeting_id, or the connection lacks the onbehalf capability (`capability_not_enabled`)", body = ErrorBody),
        (status = 404, description = "No such connection in this project", body = ErrorBody),
        (status = 409, description = "The connection is disconnected (`connection_disconnected`)", body = ErrorBody),
        (status = 429, description = "Zoom's rate limit (`zoom_rate_limited`), with Retry-After", body = ErrorBody),
        (status = 502, description = "Zoom unreachable (`zoom_unavailable`) or refused (`zoom_refused`)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn onbehalf_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
    OptionalJson(body): OptionalJson<OnbehalfTokenRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let token = tokens::user_token(
        &state.keeper,
        &caller.project_id,
        &id,
        UserToken::OnBehalf {
            meeting_id: body.meeting_id,
        },
    )
    .await?;
    Ok(Json(TokenResponse {
        token: token.expose_secret().to_owned(),
    }))
}
