//! Bot platforms (DESIGN.md §11): zoomkeeper answers the token callbacks of
//! Attendee's and Recall's bots itself, so a customer keeps its users' Zoom
//! credentials here and sends bots with either platform without a token server.
//!
//! Rules kept here: what a platform's verification secret looks like (Attendee's
//! base64 key, Recall's `whsec_…`, or a random query token for a Recall workspace
//! without one); how each request is authenticated (Attendee's signature over the
//! canonical JSON, Standard Webhooks with a 5-minute window and replay refusal);
//! which tokens each endpoint mints and with whose credentials (the local recording
//! token from the meeting's host; onbehalf for the users the URL or the bot's
//! metadata names, else the host; the ZAK from the named user, the platform's ZAK
//! user or the project's); what each platform is answered (Attendee: a JSON object
//! of four tokens; Recall: the raw token as text, 404 for no join token); and that
//! every call is logged on the platform and on each connection it used, without a
//! token.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::core::ids::IdKind;
use crate::core::signing::{self, SignatureError};
use crate::core::vault::Slot;
use crate::domain::fields::FieldProblems;
use crate::domain::join_tokens::{self, is_user_id, MintPlan, Minted, OnBehalfOf, Problem};
use crate::domain::meetings::is_meeting_number;
use crate::storage::{
    AppStore, BotPlatformCallRow, BotPlatformRow, BotPlatformStore, NewConnectionEvent, Page,
    PageRequest, Platform, StoreError,
};
use crate::Keeper;

const MAX_NAME_CHARS: usize = 100;
const MAX_USER_ID_CHARS: usize = 64;
/// Longest bot id kept in the call log.
const MAX_BOT_ID_CHARS: usize = 100;
const MAX_METADATA_KEY_CHARS: usize = 100;
/// Verification keys: Attendee's are 32 bytes, Standard Webhooks' 24 to 64.
const KEY_BYTES: std::ops::RangeInclusive<usize> = 16..=64;
/// How long a signed message id is remembered: the timestamp window, both ways.
pub const MESSAGE_ID_MEMORY: std::time::Duration =
    std::time::Duration::from_secs(2 * signing::TIMESTAMP_TOLERANCE_S as u64);

pub struct NewBotPlatform {
    pub platform: Platform,
    pub name: Option<String>,
    pub verification_secret: Option<SecretString>,
    pub zoom_oauth_app_id: Option<String>,
    pub zak_user_id: Option<String>,
    pub onbehalf_metadata_key: Option<String>,
}

/// A change; `None` leaves a field alone, `Some(None)` clears it.
#[derive(Default)]
pub struct BotPlatformChange {
    pub name: Option<String>,
    /// `Some(None)` on a Recall platform: stop checking signatures and use a new
    /// query token (also how a query token is replaced).
    pub verification_secret: Option<Option<SecretString>>,
    pub zoom_oauth_app_id: Option<Option<String>>,
    pub zak_user_id: Option<Option<String>>,
    pub onbehalf_metadata_key: Option<Option<String>>,
}

/// A platform as written, with the query token when this write made one (shown
/// once, like an API key).
pub struct Written {
    pub row: BotPlatformRow,
    pub query_token: Option<SecretString>,
}

#[derive(Debug, thiserror::Error)]
pub enum BotPlatformError {
    #[error("invalid input")]
    Invalid(BTreeMap<String, Vec<String>>),
    #[error("no such bot platform in this project")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub async fn create(
    keeper: &Keeper,
    project_id: &str,
    new: NewBotPlatform,
) -> Result<Written, BotPlatformError> {
    let mut problems = FieldProblems::default();
    let platform = new.platform;
    let name = match new.name {
        Some(name) => clean_text("name", &name, MAX_NAME_CHARS, &mut problems),
        None => Some(default_name(platform).to_owned()),
    };
    let key = match &new.verification_secret {
        Some(secret) => verification_key(platform, secret, &mut problems),
        None if platform == Platform::Attendee => {
            problems.add("verification_secret", ATTENDEE_SECRET_NEEDED);
            None
        }
        None => None,
    };
    let app_id = match new.zoom_oauth_app_id {
        Some(id) => check_app(keeper, project_id, &id, &mut problems).await?,
        None => None,
    };
    let zak_user_id = new
        .zak_user_id
        .and_then(|u| clean_user_id("zak_user_id", &u, &mut problems));
    let metadata_key = new
        .onbehalf_metadata_key
        .and_then(|k| clean_metadata_key(platform, &k, &mut problems));
    problems.into_result(BotPlatformError::Invalid)?;

    let id = IdKind::BotPlatform.generate();
    let now = keeper.clock.now();
    let query_token = key.is_none().then(new_query_token);
    let row = BotPlatformRow {
        verification_secret: key.map(|k| {
            keeper
                .vault
                .seal(Slot::bot_platform_verification_secret(&id), &k)
        }),
        query_token_hash: query_token.as_ref().map(hash_token),
        id,
        project_id: project_id.to_owned(),
        platform,
        name: name.unwrap_or_default(),
        zoom_oauth_app_id: app_id,
        zak_user_id,
        onbehalf_metadata_key: metadata_key,
        created_at: now,
        updated_at: now,
    };
    keeper.store.insert_bot_platform(&row).await?;
    Ok(Written { row, query_token })
}

pub async fn get(
    store: &dyn BotPlatformStore,
    project_id: &str,
    id: &str,
) -> Result<BotPlatformRow, BotPlatformError> {
    if !IdKind::BotPlatform.matches(id) {
        return Err(BotPlatformError::NotFound);
    }
    store
        .get_bot_platform(project_id, id)
        .await?
        .ok_or(BotPlatformError::NotFound)
}

pub async fn list(
    store: &dyn BotPlatformStore,
    project_id: &str,
    page: &PageRequest,
) -> Result<Page<BotPlatformRow>, BotPlatformError> {
    Ok(store.list_bot_platforms(project_id, page).await?)
}

pub async fn update(
    keeper: &Keeper,
    project_id: &str,
    id: &str,
    change: BotPlatformChange,
) -> Result<Written, BotPlatformError> {
    let mut row = get(&*keeper.store, project_id, id).await?;
    let mut problems = FieldProblems::default();
    let mut query_token = None;
    if let Some(name) = change.name {
        if let Some(name) = clean_text("name", &name, MAX_NAME_CHARS, &mut problems) {
            row.name = name;
        }
    }
    match change.verification_secret {
        None => {}
        Some(Some(secret)) => {
            if let Some(key) = verification_key(row.platform, &secret, &mut problems) {
                row.verification_secret = Some(
                    keeper
                        .vault
                        .seal(Slot::bot_platform_verification_secret(&row.id), &key),
                );
                row.query_token_hash = None;
            }
        }
        Some(None) if row.platform == Platform::Attendee => {
            problems.add("verification_secret", ATTENDEE_SECRET_NEEDED);
        }
        Some(None) => {
            let token = new_query_token();
            row.verification_secret = None;
            row.query_token_hash = Some(hash_token(&token));
            query_token = Some(token);
        }
    }
    match change.zoom_oauth_app_id {
        None => {}
        Some(None) => row.zoom_oauth_app_id = None,
        Some(Some(app)) => {
            if let Some(app) = check_app(keeper, project_id, &app, &mut problems).await? {
                row.zoom_oauth_app_id = Some(app);
            }
        }
    }
    match change.zak_user_id {
        None => {}
        Some(None) => row.zak_user_id = None,
        Some(Some(user)) => {
            if let Some(user) = clean_user_id("zak_user_id", &user, &mut problems) {
                row.zak_user_id = Some(user);
            }
        }
    }
    match change.onbehalf_metadata_key {
        None => {}
        Some(None) => row.onbehalf_metadata_key = None,
        Some(Some(key)) => {
            if let Some(key) = clean_metadata_key(row.platform, &key, &mut problems) {
                row.onbehalf_metadata_key = Some(key);
            }
        }
    }
    problems.into_result(BotPlatformError::Invalid)?;
    row.updated_at = keeper.clock.now();
    if !keeper.store.update_bot_platform(&row).await? {
        return Err(BotPlatformError::NotFound);
    }
    Ok(Written { row, query_token })
}

pub async fn delete(
    store: &dyn BotPlatformStore,
    project_id: &str,
    id: &str,
) -> Result<(), BotPlatformError> {
    if IdKind::BotPlatform.matches(id) && store.delete_bot_platform(project_id, id).await? {
        Ok(())
    } else {
        Err(BotPlatformError::NotFound)
    }
}

/// The platform's calls, newest first.
pub async fn calls(
    store: &dyn BotPlatformStore,
    project_id: &str,
    id: &str,
    page: &PageRequest,
) -> Result<Page<BotPlatformCallRow>, BotPlatformError> {
    let platform = get(store, project_id, id).await?;
    Ok(store.list_bot_platform_calls(&platform.id, page).await?)
}

/// The project's default ZAK user: the Zoom user whose connection mints ZAKs when a
/// request and its bot platform name none.
pub async fn default_zak_user(
    store: &dyn BotPlatformStore,
    project_id: &str,
) -> Result<Option<String>, BotPlatformError> {
    Ok(store.project_default_zak_user(project_id).await?)
}

pub async fn set_default_zak_user(
    store: &dyn BotPlatformStore,
    project_id: &str,
    user_id: Option<&str>,
) -> Result<Option<String>, BotPlatformError> {
    let mut problems = FieldProblems::default();
    let user = user_id.and_then(|u| clean_user_id("default_zak_user_id", u, &mut problems));
    problems.into_result(BotPlatformError::Invalid)?;
    store
        .set_project_default_zak_user(project_id, user.as_deref())
        .await?;
    Ok(user)
}

const ATTENDEE_SECRET_NEEDED: &str = "Attendee signs every token request: paste the webhook secret your Attendee project shows under Settings → Webhooks (44 characters of base64).";

fn default_name(platform: Platform) -> &'static str {
    match platform {
        Platform::Attendee => "Attendee",
        Platform::Recall => "Recall.ai",
    }
}

/// The raw key a platform signs with, from the secret as its dashboard shows it.
fn verification_key(
    platform: Platform,
    secret: &SecretString,
    problems: &mut FieldProblems,
) -> Option<Vec<u8>> {
    let text = secret.expose_secret().trim();
    let key = match platform {
        Platform::Attendee => base64::engine::general_purpose::STANDARD.decode(text).ok(),
        Platform::Recall => signing::standard_webhooks_key(text),
    };
    match key {
        Some(key) if KEY_BYTES.contains(&key.len()) => Some(key),
        _ => {
            problems.add(
                "verification_secret",
                match platform {
                    Platform::Attendee => "Must be the webhook secret your Attendee project shows under Settings → Webhooks: 44 characters of base64.",
                    Platform::Recall => "Must be the verification secret of your Recall workspace: it starts with whsec_ followed by base64. Leave it out if the workspace has none; zoomkeeper then gives you a token for the URLs instead.",
                },
            );
            None
        }
    }
}

async fn check_app(
    keeper: &Keeper,
    project_id: &str,
    app_id: &str,
    problems: &mut FieldProblems,
) -> Result<Option<String>, StoreError> {
    let app_id = app_id.trim();
    let found = IdKind::App.matches(app_id)
        && AppStore::get_app(&*keeper.store, project_id, app_id)
            .await?
            .is_some();
    if found {
        Ok(Some(app_id.to_owned()))
    } else {
        problems.add(
            "zoom_oauth_app_id",
            "No Zoom OAuth app with this id exists in your project.",
        );
        Ok(None)
    }
}

/// Trimmed text of 1 to `max` characters without control characters.
fn clean_text(field: &str, raw: &str, max: usize, problems: &mut FieldProblems) -> Option<String> {
    let text = raw.trim();
    if text.is_empty() {
        problems.add(field, "Must not be empty or only whitespace.");
    } else if text.chars().count() > max {
        problems.add(field, format!("Must be at most {max} characters."));
    } else if text.chars().any(char::is_control) {
        problems.add(field, "Must not contain control characters.");
    } else {
        return Some(text.to_owned());
    }
    None
}

/// A Zoom user id: letters, digits, `-` and `_`.
fn clean_user_id(field: &str, raw: &str, problems: &mut FieldProblems) -> Option<String> {
    let user = clean_text(field, raw, MAX_USER_ID_CHARS, problems)?;
    if is_user_id(&user) {
        Some(user)
    } else {
        problems.add(
            field,
            "Must be a Zoom user id (the `id` of GET /v2/users/me: letters, digits, '-' and '_').",
        );
        None
    }
}

fn clean_metadata_key(
    platform: Platform,
    raw: &str,
    problems: &mut FieldProblems,
) -> Option<String> {
    if platform == Platform::Recall {
        problems.add(
            "onbehalf_metadata_key",
            "Recall's token requests carry no bot metadata: name the user with the user_id query parameter of the obf_token_url instead.",
        );
        return None;
    }
    clean_text(
        "onbehalf_metadata_key",
        raw,
        MAX_METADATA_KEY_CHARS,
        problems,
    )
}

fn new_query_token() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn hash_token(token: &SecretString) -> Vec<u8> {
    Sha256::digest(token.expose_secret().as_bytes()).to_vec()
}

// ---------------------------------------------------------------------------
// The callbacks.

/// The four URLs a platform's bots call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Attendee's `callback_settings.zoom_tokens_url` (POST, JSON).
    AttendeeZoomTokens,
    /// Recall's `zoom.zak_url` (GET, text).
    RecallZak,
    /// Recall's `zoom.obf_token_url` (GET, text).
    RecallObf,
    /// Recall's `zoom.join_token_url` (GET, text; 404 when there is none).
    RecallJoinToken,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::AttendeeZoomTokens => "attendee_zoom_tokens",
            Endpoint::RecallZak => "recall_zak",
            Endpoint::RecallObf => "recall_obf",
            Endpoint::RecallJoinToken => "recall_join_token",
        }
    }

    fn platform(self) -> Platform {
        match self {
            Endpoint::AttendeeZoomTokens => Platform::Attendee,
            _ => Platform::Recall,
        }
    }

    /// The token this endpoint answers with (Recall) or `zoom_tokens` (Attendee).
    fn token(self) -> &'static str {
        match self {
            Endpoint::AttendeeZoomTokens => "zoom_tokens",
            Endpoint::RecallZak => "zak_token",
            Endpoint::RecallObf => "onbehalf_token",
            Endpoint::RecallJoinToken => "join_token",
        }
    }
}

/// A callback as it arrived; the HTTP layer fills it in.
pub struct CallbackRequest {
    pub body: Vec<u8>,
    /// Query parameters, in order (a repeated name: the first wins).
    pub query: Vec<(String, String)>,
    /// `X-Webhook-Signature` (Attendee).
    pub x_webhook_signature: Option<String>,
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature` (or their `svix-`
    /// names).
    pub webhook_id: Option<String>,
    pub webhook_timestamp: Option<String>,
    pub webhook_signature: Option<String>,
}

impl CallbackRequest {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }
}

/// What a callback is answered. (No `Debug`: it holds tokens.)
pub enum CallbackAnswer {
    /// Attendee: 200 with the four tokens (each possibly null) and why any is null.
    Tokens {
        tokens: Minted,
        problems: Vec<Problem>,
    },
    /// Recall: 200 with the raw token as text.
    Token(SecretString),
    /// Refused or nothing minted: the status and a sentence (text for Recall, a
    /// JSON error for Attendee).
    Refused {
        status: u16,
        code: &'static str,
        message: String,
        retry_after: Option<u64>,
    },
}

impl CallbackAnswer {
    pub fn status(&self) -> u16 {
        match self {
            CallbackAnswer::Tokens { .. } | CallbackAnswer::Token(_) => 200,
            CallbackAnswer::Refused { status, .. } => *status,
        }
    }
}

fn refused(status: u16, code: &'static str, message: impl Into<String>) -> CallbackAnswer {
    CallbackAnswer::Refused {
        status,
        code,
        message: message.into(),
        retry_after: None,
    }
}

/// What the call log records besides the answer.
#[derive(Default)]
struct Context {
    bot_id: Option<String>,
    meeting_id: Option<String>,
    minted_by: Vec<(String, &'static str)>,
    problems: Vec<Problem>,
}

/// Answers one callback of bot platform `platform_id` at `endpoint`.
pub async fn answer(
    keeper: &Arc<Keeper>,
    platform_id: &str,
    endpoint: Endpoint,
    request: CallbackRequest,
) -> CallbackAnswer {
    let platform = match find_platform(keeper, platform_id, endpoint).await {
        Ok(platform) => platform,
        Err(answer) => {
            keeper
                .metrics
                .record_bot_platform_call(endpoint.as_str(), outcome_of(&answer));
            return answer;
        }
    };
    let mut context = Context::default();
    let answer = match authenticate(keeper, &platform, &request).await {
        Err(answer) => answer,
        Ok(()) => match keeper.rate_limiter.check(&platform.project_id) {
            Err(wait) => CallbackAnswer::Refused {
                status: 429,
                code: "rate_limited",
                message: format!(
                    "Too many requests for this project; retry in {} s.",
                    wait.as_secs().max(1)
                ),
                retry_after: Some(wait.as_secs().max(1)),
            },
            Ok(()) => match endpoint {
                Endpoint::AttendeeZoomTokens => {
                    attendee(keeper, &platform, &request, &mut context).await
                }
                _ => recall(keeper, &platform, endpoint, &request, &mut context).await,
            },
        },
    };
    let outcome = outcome_of(&answer);
    keeper
        .metrics
        .record_bot_platform_call(endpoint.as_str(), outcome);
    log_call(keeper, &platform, endpoint, &answer, outcome, context);
    answer
}

async fn find_platform(
    keeper: &Keeper,
    platform_id: &str,
    endpoint: Endpoint,
) -> Result<BotPlatformRow, CallbackAnswer> {
    let not_found = || {
        refused(
            404,
            "not_found",
            "No bot platform has this id. Copy the URL again from the bot platform's representation in zoomkeeper.",
        )
    };
    if !IdKind::BotPlatform.matches(platform_id) {
        return Err(not_found());
    }
    let platform = match keeper.store.bot_platform_by_id(platform_id).await {
        Ok(Some(platform)) => platform,
        Ok(None) => return Err(not_found()),
        Err(e) => {
            tracing::error!(platform_id, error = %e, "reading a bot platform failed");
            return Err(refused(
                503,
                "unavailable",
                "The database could not be read; retry shortly.",
            ));
        }
    };
    if platform.platform != endpoint.platform() {
        return Err(refused(
            404,
            "not_found",
            format!(
                "This bot platform is a {} platform; use the URLs its representation in zoomkeeper shows.",
                default_name(platform.platform)
            ),
        ));
    }
    Ok(platform)
}

/// Checks the request was sent by the platform: its signature (and for Standard
/// Webhooks its timestamp and a first use of its id), or the query token.
async fn authenticate(
    keeper: &Keeper,
    platform: &BotPlatformRow,
    request: &CallbackRequest,
) -> Result<(), CallbackAnswer> {
    let unauthorized = |code: &'static str, e: &dyn std::fmt::Display| {
        refused(401, code, format!("Refused: {e}."))
    };
    let key = match &platform.verification_secret {
        Some(sealed) => match keeper
            .vault
            .open(Slot::bot_platform_verification_secret(&platform.id), sealed)
        {
            Ok(key) => Some(key),
            Err(e) => {
                tracing::error!(platform_id = %platform.id, error = %e, "a bot platform's verification secret does not open");
                return Err(refused(
                    500,
                    "internal_error",
                    "The bot platform's verification secret could not be opened; it is logged.",
                ));
            }
        },
        None => None,
    };
    match (platform.platform, key) {
        (Platform::Attendee, Some(key)) => {
            let signature = request
                .x_webhook_signature
                .as_deref()
                .ok_or(SignatureError::Missing("X-Webhook-Signature"))
                .map_err(|e| unauthorized("missing_signature", &e))?;
            signing::verify_attendee(key.expose_secret(), &request.body, signature).map_err(|e| {
                match e {
                    SignatureError::NotJson => {
                        refused(400, "invalid_body", format!("Refused: {e}."))
                    }
                    e => unauthorized("bad_signature", &e),
                }
            })
        }
        (Platform::Recall, Some(key)) => {
            let missing = |name| unauthorized("missing_signature", &SignatureError::Missing(name));
            let id = request
                .webhook_id
                .as_deref()
                .ok_or_else(|| missing("webhook-id"))?;
            let timestamp = request
                .webhook_timestamp
                .as_deref()
                .ok_or_else(|| missing("webhook-timestamp"))?;
            let signature = request
                .webhook_signature
                .as_deref()
                .ok_or_else(|| missing("webhook-signature"))?;
            signing::verify_standard_webhook(
                key.expose_secret(),
                id,
                timestamp,
                &request.body,
                signature,
                keeper.clock.now().timestamp(),
            )
            .map_err(|e| match e {
                SignatureError::Stale | SignatureError::BadTimestamp => {
                    unauthorized("stale_timestamp", &e)
                }
                e => unauthorized("bad_signature", &e),
            })?;
            if id.len() > 200 {
                return Err(unauthorized(
                    "bad_signature",
                    &"webhook-id is longer than 200 characters",
                ));
            }
            match keeper.store.first_use_of_message_id(&platform.id, id).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(unauthorized(
                    "replayed",
                    &"this webhook-id was already used; a signed request is answered once",
                )),
                Err(e) => {
                    tracing::error!(platform_id = %platform.id, error = %e, "recording a webhook-id failed");
                    Err(refused(
                        503,
                        "unavailable",
                        "The database could not be written; retry shortly.",
                    ))
                }
            }
        }
        (Platform::Recall, None) => {
            let given = request.param("token").ok_or_else(|| {
                unauthorized(
                    "missing_token",
                    &"the token query parameter is missing: use the URLs with the token zoomkeeper gave when the bot platform was created",
                )
            })?;
            let given = Sha256::digest(given.as_bytes());
            let expected = platform.query_token_hash.as_deref().unwrap_or_default();
            use subtle::ConstantTimeEq as _;
            if expected.len() == given.len() && bool::from(given.as_slice().ct_eq(expected)) {
                Ok(())
            } else {
                Err(unauthorized(
                    "bad_token",
                    &"the token query parameter is wrong",
                ))
            }
        }
        (Platform::Attendee, None) => Err(refused(
            500,
            "internal_error",
            "This Attendee bot platform has no verification secret; set one with PATCH.",
        )),
    }
}

/// Attendee's `zoom_tokens` callback: `{bot_id, bot_metadata, callback_type,
/// meeting_url}` in; `{zak_token, join_token, app_privilege_token, onbehalf_token}`
/// out, each a string or null (Attendee uses the strings and ignores other keys).
async fn attendee(
    keeper: &Arc<Keeper>,
    platform: &BotPlatformRow,
    request: &CallbackRequest,
    context: &mut Context,
) -> CallbackAnswer {
    let bad = |message: &str| refused(400, "invalid_body", message);
    let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
        return bad("The body is not JSON.");
    };
    let Some(body) = body.as_object() else {
        return bad("The body must be a JSON object.");
    };
    context.bot_id = body.get("bot_id").and_then(Value::as_str).map(loggable);
    match body.get("callback_type").and_then(Value::as_str) {
        Some("zoom_tokens") => {}
        _ => return bad("callback_type must be \"zoom_tokens\": this URL answers Attendee's Zoom token callback only."),
    }
    let Some(meeting_url) = body.get("meeting_url").and_then(Value::as_str) else {
        return bad("meeting_url must be the bot's Zoom meeting link.");
    };
    let metadata = body.get("bot_metadata").and_then(Value::as_object);

    let (app, meeting) = match app_and_meeting(keeper, platform, Some(meeting_url), None).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let meeting = meeting.unwrap_or_default();
    context.meeting_id = Some(meeting.clone());
    let onbehalf = if let Some(users) = request.param("onbehalf_user_id") {
        OnBehalfOf::Users(join_tokens::user_list(users))
    } else if let Some(users) = platform
        .onbehalf_metadata_key
        .as_ref()
        .and_then(|key| metadata?.get(key)?.as_str())
    {
        OnBehalfOf::Users(join_tokens::user_list(users))
    } else {
        OnBehalfOf::Host
    };
    let zak_user = match zak_user(keeper, platform, request).await {
        Ok(user) => user,
        Err(answer) => return answer,
    };
    let minted = join_tokens::mint(
        keeper,
        &MintPlan {
            project_id: &platform.project_id,
            app: &app,
            meeting: &meeting,
            app_privilege: true,
            onbehalf,
            zak_user: zak_user.as_deref(),
            recording_connection: None,
        },
    )
    .await;
    context.minted_by = minted.minted_by.clone();
    context.problems = minted.problems.clone();
    let problems = minted.problems.clone();
    CallbackAnswer::Tokens {
        tokens: minted,
        problems,
    }
}

/// Recall's three GET callbacks: one raw token each.
async fn recall(
    keeper: &Arc<Keeper>,
    platform: &BotPlatformRow,
    endpoint: Endpoint,
    request: &CallbackRequest,
    context: &mut Context,
) -> CallbackAnswer {
    context.bot_id = request
        .param("bot_id")
        .map(|b| b.chars().take(100).collect());
    let meeting = request.param("meeting_id");
    if meeting.is_none() && endpoint != Endpoint::RecallZak {
        return refused(
            400,
            "meeting_id_required",
            format!(
                "The {} is meeting-scoped: add meeting_id=<the meeting number> to this URL.",
                endpoint.token().replace('_', " ")
            ),
        );
    }
    let (app, meeting) = match app_and_meeting(keeper, platform, None, meeting).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    context.meeting_id = meeting.clone();
    let user = request.param("user_id");
    let mut plan = MintPlan {
        project_id: &platform.project_id,
        app: &app,
        meeting: meeting.as_deref().unwrap_or_default(),
        app_privilege: false,
        onbehalf: OnBehalfOf::Nobody,
        zak_user: None,
        recording_connection: None,
    };
    let zak;
    match endpoint {
        Endpoint::RecallJoinToken => plan.app_privilege = true,
        Endpoint::RecallObf => {
            plan.onbehalf = match user {
                Some(user) if user.contains(',') => {
                    return refused(
                        400,
                        "invalid_user_id",
                        "Recall takes one onbehalf token: name one Zoom user in user_id.",
                    )
                }
                Some(user) => OnBehalfOf::Users(vec![user.to_owned()]),
                None => OnBehalfOf::Host,
            }
        }
        _ => {
            zak = match zak_user(keeper, platform, request).await {
                Ok(Some(user)) => user,
                Ok(None) => {
                    return refused(
                        400,
                        "zak_user_required",
                        "No Zoom user is named for the ZAK: add user_id=<Zoom user id> to this URL, or set the bot platform's zak_user_id or the project's default_zak_user_id.",
                    )
                }
                Err(answer) => return answer,
            };
            plan.zak_user = Some(&zak);
        }
    }
    let minted = join_tokens::mint(keeper, &plan).await;
    context.minted_by = minted.minted_by.clone();
    context.problems = minted.problems.clone();
    let token = match endpoint {
        Endpoint::RecallJoinToken => minted.app_privilege_token,
        Endpoint::RecallObf => minted.onbehalf_token,
        _ => minted.zak_token,
    };
    if let Some(token) = token {
        return CallbackAnswer::Token(token);
    }
    let Some(problem) = minted.problems.into_iter().next() else {
        return refused(
            500,
            "internal_error",
            "No token was minted and no reason was recorded.",
        );
    };
    let status = match (endpoint, problem.code) {
        // Recall joins without a join token when it gets a 404.
        (Endpoint::RecallJoinToken, _) => 404,
        (_, "invalid_user_id") => 400,
        (_, "no_connection" | "no_host_connection") => 404,
        (_, "busy") => 503,
        (_, "zoom_error") => 502,
        (_, "internal_error") => 500,
        _ => 409,
    };
    refused(status, problem.code, problem.message)
}

/// The platform's app (its own, else the project's only one) and the meeting number
/// from Attendee's link or Recall's `meeting_id`.
async fn app_and_meeting(
    keeper: &Keeper,
    platform: &BotPlatformRow,
    meeting_url: Option<&str>,
    meeting_id: Option<&str>,
) -> Result<(crate::storage::AppRow, Option<String>), CallbackAnswer> {
    use join_tokens::JoinTokenError as E;
    let describe = |e: E| match e {
        E::App(message) => refused(
            409,
            "app_unclear",
            format!("{message} (Set the bot platform's zoom_oauth_app_id.)"),
        ),
        E::InvalidMeetingUrl(reason) => refused(
            400,
            "invalid_meeting_url",
            format!("meeting_url is not a Zoom meeting link: {reason}."),
        ),
        E::UnknownPersonalLink(vanity) => refused(
            404,
            "unknown_personal_link",
            format!("No connection's personal meeting URL is /my/{vanity}."),
        ),
        E::Store(e) => {
            tracing::error!(error = %e, "reading the database for a bot platform callback failed");
            refused(
                503,
                "unavailable",
                "The database could not be read; retry shortly.",
            )
        }
        // Bot platform URLs name no connection; kept with the other internal cases.
        E::Connection(why) | E::Internal(why) => {
            tracing::error!(why, "a bot platform callback failed");
            refused(
                500,
                "internal_error",
                "An internal error stopped this request; it is logged.",
            )
        }
    };
    let app = join_tokens::resolve_app(
        keeper,
        &platform.project_id,
        platform.zoom_oauth_app_id.as_deref(),
    )
    .await
    .map_err(describe)?;
    let meeting = match (meeting_url, meeting_id) {
        (Some(url), _) => {
            let link = zoom::meeting_url::parse(url)
                .map_err(|e| describe(E::InvalidMeetingUrl(e.to_string())))?;
            Some(
                join_tokens::resolve_meeting(keeper, &platform.project_id, Some(&app), link)
                    .await
                    .map_err(describe)?
                    .number,
            )
        }
        (None, Some(id)) if is_meeting_number(id) => Some(id.to_owned()),
        (None, Some(_)) => {
            return Err(refused(
                400,
                "invalid_meeting_id",
                "meeting_id must be the Zoom meeting number: 9 to 11 digits.",
            ))
        }
        (None, None) => None,
    };
    Ok((app, meeting))
}

/// A bot id as the log keeps it: at most [`MAX_BOT_ID_CHARS`], control characters
/// (NUL included, which PostgreSQL refuses) dropped.
fn loggable(bot_id: &str) -> String {
    bot_id
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_BOT_ID_CHARS)
        .collect()
}

/// Whose connection mints the ZAK: the URL's `zak_user_id` (Attendee) or `user_id`
/// (Recall), else the platform's, else the project's default; none when unset.
async fn zak_user(
    keeper: &Keeper,
    platform: &BotPlatformRow,
    request: &CallbackRequest,
) -> Result<Option<String>, CallbackAnswer> {
    let named = match platform.platform {
        Platform::Attendee => request.param("zak_user_id"),
        Platform::Recall => request.param("user_id"),
    };
    if let Some(user) = named.or(platform.zak_user_id.as_deref()) {
        return Ok(Some(user.to_owned()));
    }
    keeper
        .store
        .project_default_zak_user(&platform.project_id)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "reading the project's default ZAK user failed");
            refused(
                503,
                "unavailable",
                "The database could not be read; retry shortly.",
            )
        })
}

fn outcome_of(answer: &CallbackAnswer) -> &'static str {
    match answer {
        CallbackAnswer::Token(_) => "minted",
        CallbackAnswer::Tokens { tokens, problems } => {
            let any = tokens.app_privilege_token.is_some()
                || tokens.onbehalf_token.is_some()
                || tokens.zak_token.is_some();
            match (any, problems.is_empty()) {
                (true, true) => "minted",
                (true, false) => "partial",
                (false, _) => "none",
            }
        }
        CallbackAnswer::Refused { code, .. } => code,
    }
}

/// Writes the call to the platform's log and an event on each connection it used,
/// in the background: the bot gets its answer without waiting for the write (the
/// log is readable a moment later). A failed write is logged.
fn log_call(
    keeper: &Arc<Keeper>,
    platform: &BotPlatformRow,
    endpoint: Endpoint,
    answer: &CallbackAnswer,
    outcome: &'static str,
    context: Context,
) {
    let mut problems: Vec<Value> = context
        .problems
        .iter()
        .map(|p| json!({"token": p.token, "code": p.code, "message": p.message}))
        .collect();
    if let CallbackAnswer::Refused { code, message, .. } = answer {
        if !context.problems.iter().any(|p| p.message == *message) {
            problems.push(json!({"token": endpoint.token(), "code": code, "message": message}));
        }
    }
    let minted: Vec<&str> = context.minted_by.iter().map(|(_, token)| *token).collect();
    let call = BotPlatformCallRow {
        id: IdKind::BotPlatformCall.generate(),
        platform_id: platform.id.clone(),
        endpoint: endpoint.as_str().to_owned(),
        status: i64::from(answer.status()),
        outcome: outcome.to_owned(),
        bot_id: context.bot_id.clone(),
        meeting_id: context.meeting_id.clone(),
        minted: json!(minted),
        problems: Value::Array(problems),
        created_at: keeper.clock.now(),
    };
    tracing::info!(
        platform_id = %platform.id,
        endpoint = endpoint.as_str(),
        status = answer.status(),
        outcome,
        bot_id = context.bot_id.as_deref().unwrap_or(""),
        meeting_id = context.meeting_id.as_deref().unwrap_or(""),
        minted = ?minted,
        "bot platform callback answered"
    );
    let who = format!(
        "{} bot{}",
        default_name(platform.platform),
        context
            .bot_id
            .as_deref()
            .map(|b| format!(" {b}"))
            .unwrap_or_default()
    );
    let meeting = context.meeting_id.as_deref().unwrap_or("(none)");
    let mut events: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (connection, token) in &context.minted_by {
        events
            .entry(connection)
            .or_default()
            .push(format!("minted the {token}"));
    }
    for problem in &context.problems {
        if let Some(connection) = &problem.connection_id {
            events.entry(connection).or_default().push(format!(
                "could not mint the {} ({})",
                problem.token, problem.code
            ));
        }
    }
    let events: Vec<(String, NewConnectionEvent)> = events
        .into_iter()
        .map(|(connection, what)| {
            let event = NewConnectionEvent {
                kind: "bot_platform_call".to_owned(),
                message: format!(
                    "{who} asked bot platform {} for tokens for meeting {meeting}: {}.",
                    platform.id,
                    what.join(", ")
                ),
                data: Some(json!({
                    "bot_platform_id": platform.id,
                    "bot_platform_call_id": call.id,
                    "bot_id": context.bot_id,
                    "meeting_id": context.meeting_id,
                })),
            };
            (connection.to_owned(), event)
        })
        .collect();
    let keeper = Arc::clone(keeper);
    tokio::spawn(async move {
        if let Err(e) = keeper.store.insert_bot_platform_call(&call, &events).await {
            tracing::warn!(platform_id = %call.platform_id, error = %e, "writing a bot platform call failed");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_zoom_shaped() {
        assert!(is_user_id("KdYKjnimT4KPd8FFgQt9FQ"));
        assert!(is_user_id("a-b_c"));
        assert!(!is_user_id("a b"));
        assert!(!is_user_id("a\0b"));
        assert!(!is_user_id(""));
        assert!(!is_user_id(&"x".repeat(65)));
    }

    #[test]
    fn secrets_are_checked_per_platform() {
        let mut p = FieldProblems::default();
        let attendee =
            SecretString::from("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_owned());
        assert_eq!(
            verification_key(Platform::Attendee, &attendee, &mut p).map(|k| k.len()),
            Some(32)
        );
        let recall = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned());
        assert_eq!(
            verification_key(Platform::Recall, &recall, &mut p).map(|k| k.len()),
            Some(24)
        );
        assert!(p.0.is_empty());
        assert!(verification_key(Platform::Attendee, &recall, &mut p).is_none());
        assert!(verification_key(Platform::Recall, &attendee, &mut p).is_none());
        let short = SecretString::from("AAEC".to_owned());
        assert!(verification_key(Platform::Attendee, &short, &mut p).is_none());
        assert_eq!(p.0["verification_secret"].len(), 3);
    }
}
