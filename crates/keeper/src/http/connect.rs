//! Hosted connect (DESIGN.md §12): `/api/v1/zoom_oauth_connect_sessions` and the
//! pages under `/connect` — thin handlers over [`crate::domain::connect_sessions`].
//! The pages need no JavaScript, load only their own stylesheet, and never show the
//! link token, the `state` or the code.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::apps::timestamp;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::AppState;
use crate::domain::api_keys::Caller;
use crate::domain::connect_sessions::{
    self, ConnectSessionError, NewConnectSession, Refusal, ZoomReturn,
};
use crate::storage::ConnectSessionRow;

pub const PATH: &str = "/api/v1/zoom_oauth_connect_sessions";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(PATH, post(create_session))
        .route("/api/v1/zoom_oauth_connect_sessions/{id}", get(get_session))
        .route("/connect/static/connect.css", get(stylesheet))
        .route("/connect/zoom/callback", get(zoom_callback))
        .route("/connect/{token}", get(landing).post(continue_to_zoom))
}

/// Body of `POST /api/v1/zoom_oauth_connect_sessions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"return_url": "https://app.example.com/zoom/connected", "zoom_oauth_app_id": "zoa_a1b2c3d4e5f6g7h8", "metadata": {"customer_id": "cus_123"}, "deduplication_key": "user-42", "expires_in": 1800}))]
pub struct CreateSessionRequest {
    /// The app the user authorises; else the project's only app.
    #[serde(default)]
    #[schema(pattern = "^zoa_[A-Za-z0-9]{16}$")]
    pub zoom_oauth_app_id: Option<String>,
    /// Where the user is sent back: an http(s) URL. zoomkeeper adds
    /// `zoom_oauth_connection_id` and `session_id`, or `error`, `error_description`
    /// and `session_id`.
    #[schema(example = "https://app.example.com/zoom/connected")]
    #[schema(format = "uri", min_length = 1)]
    pub return_url: String,
    /// Stored on the connection, as in `POST /api/v1/zoom_oauth_connections`.
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub deduplication_key: Option<String>,
    #[serde(default)]
    pub is_local_recording_token_supported: Option<bool>,
    #[serde(default)]
    pub is_onbehalf_token_supported: Option<bool>,
    /// Seconds until the link expires (60 to 604800; default 1800).
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// A connect session.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "zcs_L9k8J7h6G5f4D3s2", "url": "https://zoomkeeper.example.com/connect/zct_Q1w2E3r4T5y6U7i8O9p0", "status": "pending", "zoom_oauth_app_id": "zoa_a1b2c3d4e5f6g7h8", "return_url": "https://app.example.com/zoom/connected", "zoom_oauth_connection_id": null, "error": null, "error_description": null, "metadata": {"customer_id": "cus_123"}, "deduplication_key": "user-42", "is_local_recording_token_supported": null, "is_onbehalf_token_supported": null, "expires_at": "2026-12-01T10:00:00Z", "created_at": "2026-12-01T09:30:00Z"}))]
pub struct SessionResponse {
    #[schema(example = "zcs_a1b2c3d4e5f6g7h8")]
    #[schema(pattern = "^zcs_[A-Za-z0-9]{16}$")]
    pub id: String,
    /// The link to send the user to; shown only when the session is created.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = "uri")]
    pub url: Option<String>,
    /// `pending`, `completed`, `failed` or `expired`.
    #[schema(value_type = super::schema_enums::SessionStatusDoc)]
    pub status: &'static str,
    #[schema(pattern = "^zoa_[A-Za-z0-9]{16}$")]
    pub zoom_oauth_app_id: String,
    #[schema(format = "uri")]
    pub return_url: String,
    /// Set when `completed`.
    #[schema(pattern = "^zoc_[A-Za-z0-9]{16}$")]
    pub zoom_oauth_connection_id: Option<String>,
    /// Set when `failed`: a snake_case code and a sentence.
    pub error: Option<String>,
    pub error_description: Option<String>,
    pub metadata: Option<Value>,
    pub deduplication_key: Option<String>,
    pub is_local_recording_token_supported: Option<bool>,
    pub is_onbehalf_token_supported: Option<bool>,
    #[schema(format = DateTime)]
    pub expires_at: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl SessionResponse {
    fn new(row: ConnectSessionRow, url: Option<String>, state: &AppState) -> SessionResponse {
        SessionResponse {
            status: connect_sessions::status_of(&row, state.keeper.clock.now()),
            id: row.id,
            url,
            zoom_oauth_app_id: row.app_id,
            return_url: row.return_url,
            zoom_oauth_connection_id: row.connection_id,
            error: row.error,
            error_description: row.error_description,
            metadata: row.metadata,
            deduplication_key: row.deduplication_key,
            is_local_recording_token_supported: row.is_local_recording_token_supported,
            is_onbehalf_token_supported: row.is_onbehalf_token_supported,
            expires_at: timestamp(row.expires_at),
            created_at: timestamp(row.created_at),
        }
    }
}

impl From<ConnectSessionError> for ApiError {
    fn from(e: ConnectSessionError) -> ApiError {
        match e {
            ConnectSessionError::Invalid(fields) => ApiError::invalid_fields(fields),
            ConnectSessionError::NotFound => ApiError::NotFound {
                what: "connect session",
            },
            ConnectSessionError::Store(e) => e.into(),
        }
    }
}

/// Create a connect session: a link to send a user to so they connect their Zoom
/// account, without you writing OAuth code.
///
/// The user opens `url`, confirms, authorises the app at Zoom, and comes back to
/// `return_url` with `zoom_oauth_connection_id` and `session_id` (or `error`,
/// `error_description` and `session_id`). The Zoom app must list the redirect URL
/// `{public_url}/connect/zoom/callback` (shown on the app as
/// `connect_redirect_url`). A new connection also sends a `state_change` webhook.
#[utoipa::path(
    post, path = "/api/v1/zoom_oauth_connect_sessions", tag = "Hosted connect",
    request_body = CreateSessionRequest,
    responses(
        (status = 201, description = "Created; `url` is shown only here", body = SessionResponse),
        (status = 400, description = "Invalid input", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_session(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateSessionRequest>,
) -> Result<(StatusCode, Json<SessionResponse>), ApiError> {
    let new = NewConnectSession {
        app_id: body.zoom_oauth_app_id,
        return_url: body.return_url,
        metadata: body.metadata,
        deduplication_key: body.deduplication_key,
        is_local_recording_token_supported: body.is_local_recording_token_supported,
        is_onbehalf_token_supported: body.is_onbehalf_token_supported,
        expires_in: body.expires_in,
    };
    let created =
        connect_sessions::create(&state.keeper, &caller.project_id, &state.public_url, new).await?;
    Ok((
        StatusCode::CREATED,
        Json(SessionResponse::new(created.row, Some(created.url), &state)),
    ))
}

/// Get a connect session's status.
#[utoipa::path(
    get, path = "/api/v1/zoom_oauth_connect_sessions/{id}", tag = "Hosted connect",
    params(("id" = String, Path, description = "Session id (`zcs_…`)")),
    responses(
        (status = 200, description = "The session", body = SessionResponse),
        (status = 404, description = "No such session in this project", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get_session(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
) -> Result<Json<SessionResponse>, ApiError> {
    let row = connect_sessions::get(&state.keeper, &caller.project_id, &id).await?;
    Ok(Json(SessionResponse::new(row, None, &state)))
}

#[derive(Template)]
#[template(path = "connect/landing.html")]
struct LandingPage<'a> {
    project: &'a str,
    grants: Vec<&'static str>,
    token: &'a str,
    /// RFC 3339, for the `datetime` attribute.
    expires_at: String,
    /// For people: `2026-12-02 06:47 UTC`.
    expires_at_shown: String,
}

#[derive(Template)]
#[template(path = "connect/refused.html")]
struct RefusedPage<'a> {
    error: &'a str,
    description: &'a str,
    return_to: Option<&'a str>,
}

/// A page with the headers every connect page carries: no caching, no referrer
/// (the link token is in the URL), a strict CSP, no framing.
fn page(status: StatusCode, html: Result<String, askama::Error>, state: &AppState) -> Response {
    let Ok(html) = html else {
        tracing::error!("a connect page could not be rendered");
        return ApiError::Internal(anyhow::anyhow!("rendering a connect page")).into_response();
    };
    let zoom = url::Url::parse(&state.keeper.config.zoom_oauth_url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; \
         frame-ancestors 'none'; form-action 'self' {zoom}"
    );
    let mut response = (status, axum::response::Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

fn refused(refusal: &Refusal, state: &AppState) -> Response {
    let status = match refusal.error.as_str() {
        "session_not_found" | "invalid_state" => StatusCode::NOT_FOUND,
        "session_expired" | "session_used" => StatusCode::GONE,
        "internal_error" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    page(
        status,
        RefusedPage {
            error: &refusal.error,
            description: &refusal.description,
            return_to: refusal.return_to.as_deref(),
        }
        .render(),
        state,
    )
}

async fn landing(
    State(state): State<AppState>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    match connect_sessions::landing(&state.keeper, &token).await {
        Ok(landing) => page(
            StatusCode::OK,
            LandingPage {
                project: &landing.project.name,
                grants: landing.grants(),
                token: &token,
                expires_at: timestamp(landing.session.expires_at),
                expires_at_shown: landing
                    .session
                    .expires_at
                    .format("%Y-%m-%d %H:%M UTC")
                    .to_string(),
            }
            .render(),
            &state,
        ),
        Err(refusal) => refused(&refusal, &state),
    }
}

async fn continue_to_zoom(
    State(state): State<AppState>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    match connect_sessions::authorize_url(&state.keeper, &token, &state.public_url).await {
        Ok(url) => no_referrer(Redirect::to(&url).into_response()),
        Err(refusal) => refused(&refusal, &state),
    }
}

async fn zoom_callback(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let mut zoom_return = ZoomReturn {
        state: None,
        code: None,
        error: None,
    };
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "state" if zoom_return.state.is_none() => zoom_return.state = Some(value.into_owned()),
            "code" if zoom_return.code.is_none() => {
                zoom_return.code = Some(secrecy::SecretString::from(value.into_owned()))
            }
            "error" if zoom_return.error.is_none() => zoom_return.error = Some(value.into_owned()),
            _ => {}
        }
    }
    match connect_sessions::complete(&state.keeper, &state.public_url, zoom_return).await {
        Ok(url) => no_referrer(Redirect::to(&url).into_response()),
        Err(Refusal {
            return_to: Some(url),
            ..
        }) => no_referrer(Redirect::to(&url).into_response()),
        Err(refusal) => refused(&refusal, &state),
    }
}

/// A redirect that tells the next site nothing of where the user came from.
fn no_referrer(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/connect.css"),
    )
        .into_response()
}
