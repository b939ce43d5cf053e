//! Bot platforms (DESIGN.md §11): `/api/v1/bot_platforms` to manage them, the
//! project's default ZAK user (`/api/v1/project`), and the callbacks the platforms'
//! bots call — thin handlers over [`crate::domain::bot_platforms`].

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::apps::{timestamp, DeletedResponse};
use super::connections::present;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::pagination::{List, ListPage, ListParams};
use super::AppState;
use crate::domain::api_keys::Caller;
use crate::domain::bot_platforms::{
    self, BotPlatformChange, BotPlatformError, CallbackAnswer, CallbackRequest, Endpoint,
    NewBotPlatform, Written,
};
use crate::storage::{BotPlatformCallRow, Platform};

pub const PATH: &str = "/api/v1/bot_platforms";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(PATH, get(list_bot_platforms).post(create_bot_platform))
        .route(
            "/api/v1/bot_platforms/{id}",
            get(get_bot_platform)
                .patch(update_bot_platform)
                .delete(delete_bot_platform),
        )
        .route("/api/v1/bot_platforms/{id}/calls", get(list_calls))
        .route("/api/v1/project", get(get_project).patch(update_project))
        .route(
            "/bot_platforms/{id}/attendee/zoom_tokens",
            post(attendee_zoom_tokens),
        )
        .route("/bot_platforms/{id}/recall/zak", get(recall_zak))
        .route("/bot_platforms/{id}/recall/obf", get(recall_obf))
        .route(
            "/bot_platforms/{id}/recall/join_token",
            get(recall_join_token),
        )
        .route("/api/v1/bots", any(no_bots))
        .route("/api/v1/bots/{*rest}", any(no_bots))
}

/// Body of `POST /api/v1/bot_platforms`. (No `Debug`: it holds a secret.)
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"platform": "attendee", "verification_secret": "<the webhook secret Attendee shows>", "zoom_oauth_app_id": "zoa_a1b2c3d4e5f6g7h8", "onbehalf_metadata_key": "zoom_user_id"}))]
pub struct CreateBotPlatformRequest {
    pub platform: Platform,
    /// Defaults to the platform's name.
    #[serde(default)]
    pub name: Option<String>,
    /// What the platform signs its requests with. Attendee: the webhook secret your
    /// Attendee project shows (base64, required). Recall: the workspace's
    /// verification secret (`whsec_…`); leave it out if the workspace has none and
    /// zoomkeeper gives you a `token` for the URLs instead.
    #[serde(default)]
    pub verification_secret: Option<String>,
    /// The app whose connections mint the tokens; else the project's only app.
    #[serde(default)]
    pub zoom_oauth_app_id: Option<String>,
    /// A Zoom user whose connection mints the ZAK for every bot of this platform
    /// (one dedicated account, as Recall and Zoom recommend).
    #[serde(default)]
    pub zak_user_id: Option<String>,
    /// Attendee: the key of the bot's metadata that names the Zoom user (or users,
    /// comma-separated) to mint the onbehalf token for.
    #[serde(default)]
    pub onbehalf_metadata_key: Option<String>,
}

/// Body of `PATCH /api/v1/bot_platforms/{id}`; `null` clears a field. (No `Debug`:
/// it holds a secret.)
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Attendee (production)", "zak_user_id": "z8yCxjabcdEFGHfp8uQ"}))]
pub struct UpdateBotPlatformRequest {
    #[serde(default)]
    pub name: Option<String>,
    /// A new secret; `null` on a Recall platform stops checking signatures and
    /// answers a new `query_token` (also how a query token is replaced).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub verification_secret: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub zoom_oauth_app_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub zak_user_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub onbehalf_metadata_key: Option<Option<String>>,
}

/// The URLs to paste into the platform.
#[derive(Debug, Serialize, ToSchema)]
pub struct BotPlatformUrls {
    /// Attendee: the bot's `callback_settings.zoom_tokens_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = "uri")]
    pub zoom_tokens_url: Option<String>,
    /// Recall: the bot's `zoom.zak_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = "uri")]
    pub zak_url: Option<String>,
    /// Recall: the bot's `zoom.obf_token_url`; add `meeting_id=<meeting number>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = "uri")]
    pub obf_token_url: Option<String>,
    /// Recall: the bot's `zoom.join_token_url`; add `meeting_id=<meeting number>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = "uri")]
    pub join_token_url: Option<String>,
}

/// A bot platform. The verification secret is never returned.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "bpl_M4n5B6v7C8x9Z0a1", "platform": "attendee", "name": "Attendee", "verification": "attendee_signature", "zoom_oauth_app_id": "zoa_a1b2c3d4e5f6g7h8", "zak_user_id": null, "onbehalf_metadata_key": "zoom_user_id", "query_token": null, "urls": {"zoom_tokens_url": "https://zoomkeeper.example.com/bot_platforms/bpl_M4n5B6v7C8x9Z0a1/attendee/zoom_tokens", "zak_url": null, "obf_token_url": null, "join_token_url": null}, "created_at": "2026-12-01T09:30:00Z", "updated_at": "2026-12-01T09:30:00Z"}))]
pub struct BotPlatformResponse {
    #[schema(example = "bpl_a1b2c3d4e5f6g7h8")]
    #[schema(pattern = "^bpl_[A-Za-z0-9]{16}$")]
    pub id: String,
    pub platform: Platform,
    pub name: String,
    #[schema(pattern = "^zoa_[A-Za-z0-9]{16}$")]
    pub zoom_oauth_app_id: Option<String>,
    pub zak_user_id: Option<String>,
    pub onbehalf_metadata_key: Option<String>,
    /// How requests are checked: `attendee_signature`, `standard_webhooks`, or
    /// `query_token` (a Recall workspace without a verification secret).
    pub verification: &'static str,
    /// The URLs to paste into the platform. With `query_token` verification they
    /// carry `token=` only in the answer that made the token.
    pub urls: BotPlatformUrls,
    /// The `token` query parameter, shown once: in the answer of the create or
    /// update that made it. Later reads never show it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_token: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl BotPlatformResponse {
    pub(crate) fn new(written: &Written, public_url: &str) -> BotPlatformResponse {
        let row = &written.row;
        let base = format!("{public_url}/bot_platforms/{}", row.id);
        let token = written.query_token.as_ref().map(|t| t.expose_secret());
        let url = |path: &str| match token {
            Some(token) => format!("{base}/{path}?token={token}"),
            None => format!("{base}/{path}"),
        };
        let urls = match row.platform {
            Platform::Attendee => BotPlatformUrls {
                zoom_tokens_url: Some(url("attendee/zoom_tokens")),
                zak_url: None,
                obf_token_url: None,
                join_token_url: None,
            },
            Platform::Recall => BotPlatformUrls {
                zoom_tokens_url: None,
                zak_url: Some(url("recall/zak")),
                obf_token_url: Some(url("recall/obf")),
                join_token_url: Some(url("recall/join_token")),
            },
        };
        BotPlatformResponse {
            id: row.id.clone(),
            platform: row.platform,
            name: row.name.clone(),
            zoom_oauth_app_id: row.zoom_oauth_app_id.clone(),
            zak_user_id: row.zak_user_id.clone(),
            onbehalf_metadata_key: row.onbehalf_metadata_key.clone(),
            verification: match (row.platform, &row.verification_secret) {
                (Platform::Attendee, _) => "attendee_signature",
                (Platform::Recall, Some(_)) => "standard_webhooks",
                (Platform::Recall, None) => "query_token",
            },
            urls,
            query_token: token.map(str::to_owned),
            created_at: timestamp(row.created_at),
            updated_at: timestamp(row.updated_at),
        }
    }

    fn of_row(row: crate::storage::BotPlatformRow, public_url: &str) -> BotPlatformResponse {
        BotPlatformResponse::new(
            &Written {
                row,
                query_token: None,
            },
            public_url,
        )
    }
}

/// One token callback a platform made. Never holds a token.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "bpc_Zx9Yw8Vu7Ts6Rq5P", "endpoint": "attendee_zoom_tokens", "status": 200, "outcome": "partial", "bot_id": "bot_3hfnZk1Qq1A2B3C4", "meeting_id": "85746065432", "minted": ["zak_token", "app_privilege_token"], "problems": [{"token": "onbehalf_token", "code": "capability_not_enabled", "message": "Connection zoc_q7w8e9r0t1y2u3i4 does not allow onbehalf tokens: set is_onbehalf_token_supported to true."}], "created_at": "2026-12-01T09:30:00Z"}))]
pub struct BotPlatformCallResponse {
    #[schema(example = "bpc_a1b2c3d4e5f6g7h8")]
    #[schema(pattern = "^bpc_[A-Za-z0-9]{16}$")]
    pub id: String,
    /// `attendee_zoom_tokens`, `recall_zak`, `recall_obf` or `recall_join_token`.
    pub endpoint: String,
    /// The HTTP status answered.
    pub status: i64,
    /// `minted`, `partial`, `none`, or why the request was refused
    /// (`bad_signature`, `stale_timestamp`, `replayed`, `missing_signature`, …).
    pub outcome: String,
    pub bot_id: Option<String>,
    pub meeting_id: Option<String>,
    /// Names of the tokens handed out.
    #[schema(value_type = Vec<String>)]
    pub minted: Value,
    /// Why a token is missing or the request was refused: `[{token, code, message}]`.
    #[schema(value_type = Vec<super::schema_enums::CallProblemDoc>)]
    pub problems: Value,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<&BotPlatformCallRow> for BotPlatformCallResponse {
    fn from(c: &BotPlatformCallRow) -> Self {
        BotPlatformCallResponse {
            id: c.id.clone(),
            endpoint: c.endpoint.clone(),
            status: c.status,
            outcome: c.outcome.clone(),
            bot_id: c.bot_id.clone(),
            meeting_id: c.meeting_id.clone(),
            minted: c.minted.clone(),
            problems: c.problems.clone(),
            created_at: timestamp(c.created_at),
        }
    }
}

impl From<BotPlatformError> for ApiError {
    fn from(e: BotPlatformError) -> ApiError {
        match e {
            BotPlatformError::Invalid(fields) => ApiError::invalid_fields(fields),
            BotPlatformError::NotFound => ApiError::NotFound {
                what: "bot platform",
            },
            BotPlatformError::Store(e) => e.into(),
        }
    }
}

/// Create a bot platform: the URLs its bots ask for Zoom tokens.
#[utoipa::path(
    post, path = "/api/v1/bot_platforms", tag = "Bot platforms",
    request_body = CreateBotPlatformRequest,
    responses(
        (status = 201, description = "Created; `query_token` is shown only here", body = BotPlatformResponse),
        (status = 400, description = "Invalid input", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_bot_platform(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateBotPlatformRequest>,
) -> Result<(StatusCode, Json<BotPlatformResponse>), ApiError> {
    let new = NewBotPlatform {
        platform: body.platform,
        name: body.name,
        verification_secret: body.verification_secret.map(SecretString::from),
        zoom_oauth_app_id: body.zoom_oauth_app_id,
        zak_user_id: body.zak_user_id,
        onbehalf_metadata_key: body.onbehalf_metadata_key,
    };
    let written = bot_platforms::create(&state.keeper, &caller.project_id, new).await?;
    Ok((
        StatusCode::CREATED,
        Json(BotPlatformResponse::new(&written, &state.public_url)),
    ))
}

/// List the project's bot platforms, newest first.
#[utoipa::path(
    get, path = "/api/v1/bot_platforms", tag = "Bot platforms",
    params(ListParams),
    responses(
        (status = 200, description = "A page of bot platforms", body = ListPage<BotPlatformResponse>),
        (status = 400, description = "Bad page_size or cursor (`invalid_cursor`)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_bot_platforms(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<ListPage<BotPlatformResponse>>, ApiError> {
    let request = params.page_request(List::BotPlatforms)?;
    let page = bot_platforms::list(&*state.keeper.store, &caller.project_id, &request).await?;
    let list_url = format!("{}{PATH}", state.public_url);
    Ok(Json(ListPage::of(
        List::BotPlatforms,
        &list_url,
        &request,
        &page,
        |p| (p.created_at, p.id.clone()),
        |p| BotPlatformResponse::of_row(p.clone(), &state.public_url),
    )))
}

/// Get one bot platform.
#[utoipa::path(
    get, path = "/api/v1/bot_platforms/{id}", tag = "Bot platforms",
    params(("id" = String, Path, description = "Bot platform id (`bpl_…`)")),
    responses(
        (status = 200, description = "The bot platform", body = BotPlatformResponse),
        (status = 404, description = "No such bot platform in this project", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get_bot_platform(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
) -> Result<Json<BotPlatformResponse>, ApiError> {
    let row = bot_platforms::get(&*state.keeper.store, &caller.project_id, &id).await?;
    Ok(Json(BotPlatformResponse::of_row(row, &state.public_url)))
}

/// Change a bot platform.
#[utoipa::path(
    patch, path = "/api/v1/bot_platforms/{id}", tag = "Bot platforms",
    params(("id" = String, Path, description = "Bot platform id (`bpl_…`)")),
    request_body = UpdateBotPlatformRequest,
    responses(
        (status = 200, description = "The updated bot platform; a new `query_token` is shown only here", body = BotPlatformResponse),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 404, description = "No such bot platform in this project", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn update_bot_platform(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
    ApiJson(body): ApiJson<UpdateBotPlatformRequest>,
) -> Result<Json<BotPlatformResponse>, ApiError> {
    let change = BotPlatformChange {
        name: body.name,
        verification_secret: body.verification_secret.map(|s| s.map(SecretString::from)),
        zoom_oauth_app_id: body.zoom_oauth_app_id,
        zak_user_id: body.zak_user_id,
        onbehalf_metadata_key: body.onbehalf_metadata_key,
    };
    let written = bot_platforms::update(&state.keeper, &caller.project_id, &id, change).await?;
    Ok(Json(BotPlatformResponse::new(&written, &state.public_url)))
}

/// Delete a bot platform and its call log; its URLs answer 404 from then on.
#[utoipa::path(
    delete, path = "/api/v1/bot_platforms/{id}", tag = "Bot platforms",
    params(("id" = String, Path, description = "Bot platform id (`bpl_…`)")),
    responses(
        (status = 200, description = "Deleted", body = DeletedResponse),
        (status = 404, description = "No such bot platform in this project", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn delete_bot_platform(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
) -> Result<Json<DeletedResponse>, ApiError> {
    bot_platforms::delete(&*state.keeper.store, &caller.project_id, &id).await?;
    Ok(Json(DeletedResponse { id, deleted: true }))
}

/// The platform's token callbacks, newest first: who asked, for which meeting, what
/// was minted and why anything was not. Never holds a token.
#[utoipa::path(
    get, path = "/api/v1/bot_platforms/{id}/calls", tag = "Bot platforms",
    params(("id" = String, Path, description = "Bot platform id (`bpl_…`)"), ListParams),
    responses(
        (status = 200, description = "A page of calls", body = ListPage<BotPlatformCallResponse>),
        (status = 400, description = "Bad page_size or cursor (`invalid_cursor`)", body = ErrorBody),
        (status = 404, description = "No such bot platform in this project", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_calls(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<ListPage<BotPlatformCallResponse>>, ApiError> {
    let request = params.page_request(List::BotPlatformCalls)?;
    let page =
        bot_platforms::calls(&*state.keeper.store, &caller.project_id, &id, &request).await?;
    let list_url = format!("{}{PATH}/{id}/calls", state.public_url);
    Ok(Json(ListPage::of(
        List::BotPlatformCalls,
        &list_url,
        &request,
        &page,
        |c| (c.created_at, c.id.clone()),
        |c| BotPlatformCallResponse::from(c),
    )))
}

/// The caller's project.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "prj_P1o2I3u4Y5t6R7e8", "default_zak_user_id": "z8yCxjabcdEFGHfp8uQ"}))]
pub struct ProjectResponse {
    #[schema(example = "prj_a1b2c3d4e5f6g7h8")]
    pub id: String,
    /// The Zoom user whose connection mints ZAKs when a join-token request or a bot
    /// platform names none (one dedicated account, as Recall and Zoom recommend).
    pub default_zak_user_id: Option<String>,
}

/// Body of `PATCH /api/v1/project`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"default_zak_user_id": "z8yCxjabcdEFGHfp8uQ"}))]
pub struct UpdateProjectRequest {
    /// A Zoom user id, or `null` to clear it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub default_zak_user_id: Option<Option<String>>,
}

/// The caller's project settings.
#[utoipa::path(
    get, path = "/api/v1/project", tag = "Bot platforms",
    responses((status = 200, description = "The project", body = ProjectResponse)),
    security(("api_key" = []))
)]
pub async fn get_project(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ProjectResponse>, ApiError> {
    let user = bot_platforms::default_zak_user(&*state.keeper.store, &caller.project_id).await?;
    Ok(Json(ProjectResponse {
        id: caller.project_id,
        default_zak_user_id: user,
    }))
}

/// Change the caller's project settings.
#[utoipa::path(
    patch, path = "/api/v1/project", tag = "Bot platforms",
    request_body = UpdateProjectRequest,
    responses(
        (status = 200, description = "The project", body = ProjectResponse),
        (status = 400, description = "Invalid input", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn update_project(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<UpdateProjectRequest>,
) -> Result<Json<ProjectResponse>, ApiError> {
    let store = &*state.keeper.store;
    let user = match body.default_zak_user_id {
        None => bot_platforms::default_zak_user(store, &caller.project_id).await?,
        Some(user) => {
            bot_platforms::set_default_zak_user(store, &caller.project_id, user.as_deref()).await?
        }
    };
    Ok(Json(ProjectResponse {
        id: caller.project_id,
        default_zak_user_id: user,
    }))
}

fn header(headers: &HeaderMap, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
        .map(str::to_owned)
}

fn callback_request(headers: &HeaderMap, query: Option<String>, body: Bytes) -> CallbackRequest {
    CallbackRequest {
        body: body.to_vec(),
        query: url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect(),
        x_webhook_signature: header(headers, &["x-webhook-signature"]),
        webhook_id: header(headers, &["webhook-id", "svix-id"]),
        webhook_timestamp: header(headers, &["webhook-timestamp", "svix-timestamp"]),
        webhook_signature: header(headers, &["webhook-signature", "svix-signature"]),
    }
}

/// Attendee's answer: the four tokens as JSON (each a string or null), plus
/// `problems` (Attendee ignores keys it does not know).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"zak_token": "<ZAK>", "join_token": null, "app_privilege_token": "<local recording token>", "onbehalf_token": null, "problems": [{"token": "onbehalf_token", "code": "no_connection", "message": "No connected connection of app zoa_a1b2c3d4e5f6g7h8 for Zoom user z8yCxjabcdEFGHfp8uQ."}]}))]
pub struct AttendeeTokensResponse {
    pub zak_token: Option<String>,
    pub join_token: Option<String>,
    pub app_privilege_token: Option<String>,
    pub onbehalf_token: Option<String>,
    /// Why a token is null: `[{token, code, message}]`.
    #[schema(value_type = Vec<super::join_tokens::ProblemResponse>)]
    pub problems: Value,
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn render(answer: CallbackAnswer, json_errors: bool) -> Response {
    let status = StatusCode::from_u16(answer.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let response = match answer {
        CallbackAnswer::Tokens { tokens, problems } => {
            let open = |t: Option<SecretString>| t.map(|t| t.expose_secret().to_owned());
            Json(AttendeeTokensResponse {
                zak_token: open(tokens.zak_token),
                join_token: None,
                app_privilege_token: open(tokens.app_privilege_token),
                onbehalf_token: open(tokens.onbehalf_token),
                problems: problems
                    .iter()
                    .map(|p| serde_json::json!({"token": p.token, "code": p.code, "message": p.message}))
                    .collect(),
            })
            .into_response()
        }
        CallbackAnswer::Token(token) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            token.expose_secret().to_owned(),
        )
            .into_response(),
        CallbackAnswer::Refused {
            code,
            message,
            retry_after,
            ..
        } => {
            let mut response = if json_errors {
                (
                    status,
                    Json(ErrorBody {
                        error: message,
                        code: code.to_owned(),
                        fields: None,
                        detail: None,
                    }),
                )
                    .into_response()
            } else {
                (
                    status,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    message,
                )
                    .into_response()
            };
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
    };
    no_store(response)
}

/// Attendee's Zoom token callback: set this URL as the bot's
/// `callback_settings.zoom_tokens_url`.
///
/// Attendee POSTs `{bot_id, bot_metadata, callback_type: "zoom_tokens",
/// meeting_url}` signed with its project's webhook secret (`X-Webhook-Signature`).
/// The answer is always 200 once the request is verified and names a meeting: each
/// token a string or null, with `problems` saying why one is null. The local
/// recording token (`app_privilege_token`) comes from the meeting host's connection;
/// the onbehalf token for the users the `onbehalf_user_id` query parameter names
/// (comma-separated: newer Attendee tries each), else the bot metadata key the
/// platform names, else the host; the ZAK from `zak_user_id` (query), the platform's
/// or the project's ZAK user.
#[utoipa::path(
    post, path = "/bot_platforms/{id}/attendee/zoom_tokens", tag = "Bot platform callbacks",
    params(
        ("id" = String, Path, description = "Bot platform id (`bpl_…`)"),
        ("onbehalf_user_id" = Option<String>, Query, description = "Zoom user id(s), comma-separated, to mint onbehalf tokens for"),
        ("zak_user_id" = Option<String>, Query, description = "Zoom user id whose connection mints the ZAK"),
    ),
    request_body(content = Object, description = "Attendee's callback payload",
        example = json!({"bot_id": "bot_3hfnZk1Qq1A2B3C4", "bot_metadata": {"zoom_user_id": "z8yCxjabcdEFGHfp8uQ"}, "callback_type": "zoom_tokens", "meeting_url": "https://us05web.zoom.us/j/85746065432?pwd=AbCdEf123"})),
    responses(
        (status = 200, description = "The tokens", body = AttendeeTokensResponse),
        (status = 400, description = "Not Attendee's zoom_tokens callback, or no meeting link", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Webhook-Signature", body = ErrorBody),
        (status = 404, description = "No such Attendee bot platform", body = ErrorBody),
        (status = 409, description = "The platform's app is unclear", body = ErrorBody),
        (status = 429, description = "Too many requests for the project", body = ErrorBody),
    )
)]
pub async fn attendee_zoom_tokens(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = callback_request(&headers, query, body);
    let answer =
        bot_platforms::answer(&state.keeper, &id, Endpoint::AttendeeZoomTokens, request).await;
    render(answer, true)
}

async fn recall(
    state: AppState,
    id: String,
    endpoint: Endpoint,
    query: Option<String>,
    headers: HeaderMap,
) -> Response {
    let request = callback_request(&headers, query, Bytes::new());
    render(
        bot_platforms::answer(&state.keeper, &id, endpoint, request).await,
        false,
    )
}

/// Recall's ZAK callback (`zoom.zak_url`): the raw ZAK as text.
///
/// For the Zoom user `user_id` names, else the platform's or the project's ZAK user.
/// Signed with Standard Webhooks (`webhook-*` or `svix-*` headers) when the
/// platform has a verification secret, else authenticated by the `token` parameter.
#[utoipa::path(
    get, path = "/bot_platforms/{id}/recall/zak", tag = "Bot platform callbacks",
    params(
        ("id" = String, Path, description = "Bot platform id (`bpl_…`)"),
        ("user_id" = Option<String>, Query, description = "Zoom user id whose connection mints the ZAK"),
        ("token" = Option<String>, Query, description = "The platform's query token, when it has no verification secret"),
    ),
    responses(
        (status = 200, description = "The ZAK", content_type = "text/plain", body = String),
        (status = 400, description = "No user named", content_type = "text/plain", body = String),
        (status = 401, description = "Not signed by the platform, stale, or replayed", content_type = "text/plain", body = String),
        (status = 404, description = "No such platform, or no connection for the user", content_type = "text/plain", body = String),
        (status = 409, description = "The connection is disconnected", content_type = "text/plain", body = String),
        (status = 502, description = "Zoom refused or failed", content_type = "text/plain", body = String),
    )
)]
pub async fn recall_zak(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    recall(state, id, Endpoint::RecallZak, query, headers).await
}

/// Recall's onbehalf (OBF) token callback (`zoom.obf_token_url`): the raw token as
/// text, for meeting `meeting_id`, minted for the Zoom user `user_id` names, else
/// the meeting's host when their connection has the onbehalf capability.
#[utoipa::path(
    get, path = "/bot_platforms/{id}/recall/obf", tag = "Bot platform callbacks",
    params(
        ("id" = String, Path, description = "Bot platform id (`bpl_…`)"),
        ("meeting_id" = String, Query, description = "The meeting number"),
        ("user_id" = Option<String>, Query, description = "Zoom user id to mint the token for"),
        ("token" = Option<String>, Query, description = "The platform's query token, when it has no verification secret"),
    ),
    responses(
        (status = 200, description = "The onbehalf token", content_type = "text/plain", body = String),
        (status = 400, description = "meeting_id missing or malformed", content_type = "text/plain", body = String),
        (status = 401, description = "Not signed by the platform, stale, or replayed", content_type = "text/plain", body = String),
        (status = 404, description = "No such platform, or no connection for the user or host", content_type = "text/plain", body = String),
        (status = 409, description = "The connection is disconnected or lacks the onbehalf capability", content_type = "text/plain", body = String),
        (status = 502, description = "Zoom refused or failed", content_type = "text/plain", body = String),
    )
)]
pub async fn recall_obf(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    recall(state, id, Endpoint::RecallObf, query, headers).await
}

/// Recall's join token callback (`zoom.join_token_url`): the local recording join
/// token of meeting `meeting_id` (it lets the bot skip the waiting room), minted
/// with the host's connection; 404 when none can be minted, so Recall joins
/// without one.
#[utoipa::path(
    get, path = "/bot_platforms/{id}/recall/join_token", tag = "Bot platform callbacks",
    params(
        ("id" = String, Path, description = "Bot platform id (`bpl_…`)"),
        ("meeting_id" = String, Query, description = "The meeting number"),
        ("token" = Option<String>, Query, description = "The platform's query token, when it has no verification secret"),
    ),
    responses(
        (status = 200, description = "The join token", content_type = "text/plain", body = String),
        (status = 400, description = "meeting_id missing or malformed", content_type = "text/plain", body = String),
        (status = 401, description = "Not signed by the platform, stale, or replayed", content_type = "text/plain", body = String),
        (status = 404, description = "No join token can be minted (the reason is the body), or no such platform", content_type = "text/plain", body = String),
    )
)]
pub async fn recall_join_token(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    recall(state, id, Endpoint::RecallJoinToken, query, headers).await
}

/// Attendee's clients launch bots with `POST /api/v1/bots`; zoomkeeper does not.
async fn no_bots() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(ErrorBody {
            error: "zoomkeeper does not launch bots. Launch them on your bot platform (Attendee or Recall) and point its Zoom token URL at zoomkeeper: create a bot platform with POST /api/v1/bot_platforms and paste the URLs it shows into the bot's settings.".to_owned(),
            code: "bots_not_launched_here".to_owned(),
            fields: None,
            detail: None,
        }),
    )
        .into_response()
}
