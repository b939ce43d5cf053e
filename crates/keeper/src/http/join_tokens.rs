//! `POST /api/v1/zoom_join_tokens`: a thin handler over [`crate::domain::join_tokens`].

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::apps::timestamp;
use super::error::{ApiError, ErrorBody, FieldErrors};
use super::extract::ApiJson;
use super::AppState;
use crate::domain::api_keys::Caller;
use crate::domain::join_tokens::{self, JoinTokenError, JoinTokenRequest, JoinTokens};

pub const PATH: &str = "/api/v1/zoom_join_tokens";

pub fn routes() -> Router<AppState> {
    Router::new().route(PATH, post(create_join_tokens))
}

/// Body of `POST /api/v1/zoom_join_tokens`. (No `Debug`: a start link may carry a ZAK.)
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"meeting_url": "https://us05web.zoom.us/j/85746065432?pwd=AbCdEf123", "zoom_oauth_app_id": "zoa_a1b2c3d4e5f6g7h8", "zak_token": {"zoom_oauth_connection_user_id": "z8yCxjabcdEFGHfp8uQ"}, "sdk_signature": {"role": 0}}))]
pub struct JoinTokensRequest {
    /// The Zoom link the bot will join: `/j/`, `/s/`, `/w/`, `/wc/…`, `/my/{vanity}`,
    /// or `zoommtg://` / `zoomus://`.
    #[schema(example = "https://us02web.zoom.us/j/85746065432?pwd=abc")]
    #[schema(min_length = 1)]
    pub meeting_url: String,
    /// May be left out when the project has exactly one app.
    #[serde(default)]
    #[schema(pattern = "^zoa_[A-Za-z0-9]{16}$")]
    pub zoom_oauth_app_id: Option<String>,
    /// Mint an onbehalf token with this user's connection.
    #[serde(default)]
    pub onbehalf_token: Option<UserSelector>,
    /// Mint a ZAK with this user's connection.
    #[serde(default)]
    pub zak_token: Option<UserSelector>,
    /// Sign a Meeting SDK JWT (2 h) with the app's client secret.
    #[serde(default)]
    pub sdk_signature: Option<SdkSignatureRequest>,
    /// Fetch the tokens from your own server instead.
    #[serde(default)]
    pub callback_settings: Option<CallbackSettings>,
    /// Mint the local recording token with this connection instead of the meeting's
    /// host from the meeting index. Zoom mints it only for its host (or an admin of
    /// the host's account): otherwise the token is null with a `not_meeting_host`
    /// problem.
    #[serde(default)]
    #[schema(example = "zoc_a1b2c3d4e5f6g7h8")]
    #[schema(pattern = "^zoc_[A-Za-z0-9]{16}$")]
    pub zoom_oauth_connection_id: Option<String>,
}

/// Which connection mints a user token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserSelector {
    /// The Zoom user id of a connection of the app.
    pub zoom_oauth_connection_user_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SdkSignatureRequest {
    /// 0: join as a participant; 1: start as host.
    #[serde(deserialize_with = "sdk_role")]
    #[schema(value_type = u8, minimum = 0, maximum = 1)]
    pub role: zoom::SdkRole,
}

fn sdk_role<'de, D: Deserializer<'de>>(d: D) -> Result<zoom::SdkRole, D::Error> {
    let n = i64::deserialize(d).map_err(|_| serde::de::Error::custom("must be 0 or 1"))?;
    zoom::SdkRole::from_number(n).ok_or_else(|| serde::de::Error::custom("must be 0 or 1"))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallbackSettings {
    /// zoomkeeper POSTs `{callback_type: "zoom_tokens", meeting_url}` here, signed with
    /// `X-Webhook-Signature` like an outgoing webhook, and reads `zak_token`,
    /// `join_token`, `app_privilege_token`, `onbehalf_token` from the JSON answer.
    pub zoom_tokens_url: String,
}

/// A Meeting SDK JWT. (No `Debug`: it holds the JWT.)
#[derive(Serialize, ToSchema)]
pub struct SdkSignatureResponse {
    pub jwt: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// Why a token is null.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemResponse {
    /// The token's field, or `callback`.
    #[schema(example = "app_privilege_token")]
    pub token: String,
    /// `no_host_connection`, `no_connection`, `connection_disconnected`,
    /// `capability_not_enabled`, `zoom_error`, `busy`, `callback_url_refused`,
    /// `callback_failed`, `internal_error`.
    #[schema(example = "no_host_connection")]
    #[schema(value_type = super::schema_enums::ProblemCodeDoc)]
    pub code: String,
    pub message: String,
}

/// Everything a bot needs to join. (No `Debug`: it holds tokens.)
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"meeting_id": "85746065432", "meeting_password": "AbCdEf123", "registrant_token": null, "app_privilege_token": "<local recording token>", "zak_token": "<ZAK>", "onbehalf_token": null, "join_token": null, "sdk_signature": {"jwt": "<Meeting SDK JWT>", "expires_at": "2026-12-01T11:30:00Z"}, "problems": []}))]
pub struct JoinTokensResponse {
    #[schema(example = "85746065432")]
    #[schema(pattern = "^[1-9][0-9]{8,10}$")]
    pub meeting_id: Option<String>,
    pub meeting_password: Option<String>,
    /// The link's `tk`.
    pub registrant_token: Option<String>,
    /// The local recording token, minted with the meeting host's credentials.
    pub app_privilege_token: Option<String>,
    pub onbehalf_token: Option<String>,
    pub zak_token: Option<String>,
    /// Only from a `zoom_tokens_url` callback.
    pub join_token: Option<String>,
    pub sdk_signature: Option<SdkSignatureResponse>,
    /// One row per token that could not be had.
    pub problems: Vec<ProblemResponse>,
}

impl From<JoinTokens> for JoinTokensResponse {
    fn from(t: JoinTokens) -> Self {
        let reveal = |s: Option<SecretString>| s.map(|s| s.expose_secret().to_owned());
        JoinTokensResponse {
            meeting_id: t.meeting_id,
            meeting_password: t.meeting_password,
            registrant_token: t.registrant_token,
            app_privilege_token: reveal(t.app_privilege_token),
            onbehalf_token: reveal(t.onbehalf_token),
            zak_token: reveal(t.zak_token),
            join_token: reveal(t.join_token),
            sdk_signature: t.sdk_signature.map(|s| SdkSignatureResponse {
                jwt: s.jwt.expose_secret().to_owned(),
                expires_at: join_tokens::unix_to_datetime(s.expires_at)
                    .map(timestamp)
                    .unwrap_or_default(),
            }),
            problems: t
                .problems
                .into_iter()
                .map(|p| ProblemResponse {
                    token: p.token.to_owned(),
                    code: p.code.to_owned(),
                    message: p.message,
                })
                .collect(),
        }
    }
}

fn field_error(code: &'static str, field: &str, problem: String) -> ApiError {
    let mut fields = FieldErrors::new();
    fields.insert(field.to_owned(), vec![problem.clone()]);
    ApiError::validation(code, format!("{field}: {problem}"), fields)
}

impl From<JoinTokenError> for ApiError {
    fn from(e: JoinTokenError) -> ApiError {
        match e {
            JoinTokenError::InvalidMeetingUrl(reason) => {
                field_error("invalid_meeting_url", "meeting_url", format!("{reason}."))
            }
            JoinTokenError::UnknownPersonalLink(vanity) => field_error(
                "unknown_personal_link",
                "meeting_url",
                format!("No connection's personal meeting URL is /my/{vanity}; connect that user (their meeting sync stores it) or send the meeting's /j/ link."),
            ),
            JoinTokenError::App(message) => field_error("invalid_request", "zoom_oauth_app_id", message),
            JoinTokenError::Connection(message) => {
                field_error("invalid_request", "zoom_oauth_connection_id", message)
            }
            JoinTokenError::Store(e) => e.into(),
            JoinTokenError::Internal(context) => ApiError::Internal(anyhow::anyhow!(context)),
        }
    }
}

/// Everything a bot needs to join one meeting: the local recording token (minted
/// with the host's credentials), an onbehalf token, a ZAK, the Meeting SDK signature,
/// the passcode and registrant token. A token that cannot be had is null, with a
/// `problems` row saying why.
#[utoipa::path(
    post, path = "/api/v1/zoom_join_tokens", tag = "Tokens",
    request_body = JoinTokensRequest,
    responses(
        (status = 200, description = "The tokens; missing ones are null with a problem row", body = JoinTokensResponse),
        (status = 400, description = "Unreadable meeting_url (`invalid_meeting_url`), unknown /my/ link (`unknown_personal_link`), unclear app, or bad input", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_join_tokens(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<JoinTokensRequest>,
) -> Result<Json<JoinTokensResponse>, ApiError> {
    let request = JoinTokenRequest {
        meeting_url: body.meeting_url,
        app_id: body.zoom_oauth_app_id,
        onbehalf_user_id: body.onbehalf_token.map(|s| s.zoom_oauth_connection_user_id),
        zak_user_id: body.zak_token.map(|s| s.zoom_oauth_connection_user_id),
        sdk_role: body.sdk_signature.map(|s| s.role),
        zoom_tokens_url: body.callback_settings.map(|c| c.zoom_tokens_url),
        recording_connection_id: body.zoom_oauth_connection_id,
    };
    let tokens = join_tokens::join_tokens(&state.keeper, &caller.project_id, request).await?;
    Ok(Json(tokens.into()))
}
