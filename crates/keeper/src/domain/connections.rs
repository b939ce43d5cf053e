//! Zoom OAuth connections: one Zoom user's grant to one of the project's apps
//! (DESIGN.md §4 "Zoom OAuth connections").
//!
//! Rules kept here: the scope check (granular and older scope names), the active-user
//! check, the upsert by (app, Zoom user) and the re-binding by deduplication_key,
//! metadata rules, and the one shape of the `zoom_oauth_connection.state_change`
//! event every state change writes. What a refresh failure means lives in
//! [`crate::domain::tokens`].

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use zoom::{PkceVerifier, TokenGrant, ZoomError, ZoomUser};

use crate::core::ids::IdKind;
use crate::core::vault::Slot;
use crate::domain::tokens::{self, BrokeredCallError, TokenError};
use crate::domain::{apps, grant};
use crate::storage::{
    AppKind, AppRow, ConnectionEventFilter, ConnectionEventRow, ConnectionFilter, ConnectionRow,
    ConnectionSettingsUpdate, ConnectionState, FailureData, GrantReplacement, MeetingSyncStatus,
    NewConnectionEvent, OutboxSource, Page, PageRequest, Sealed, StoreError,
};
use crate::Keeper;

/// Largest `metadata`, as compact JSON.
pub const MAX_METADATA_CHARS: usize = 1_000;
const MAX_DEDUPLICATION_KEY_CHARS: usize = 255;
const MAX_CODE_CHARS: usize = 2_000;
const MAX_REDIRECT_URI_CHARS: usize = 2_000;
/// How many times `create` re-decides after losing a race (a unique rule, or the
/// connection changed between its read and its write).
const UPSERT_ATTEMPTS: usize = 8;
/// Pause before trying again to store a grant after a database failure.
const STORE_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// The scopes a connection of an app of `kind` needs for the capabilities asked for
/// that `granted` does not cover (granular names, in a stable order), from the one
/// scope table in [`zoom::scopes`]: an account-level grant needs the `:admin` ones.
pub fn missing_scopes(
    kind: AppKind,
    granted: &[String],
    local_recording: bool,
    onbehalf: bool,
) -> Vec<&'static str> {
    match kind {
        AppKind::UserLevel => zoom::scopes::missing(granted, local_recording, onbehalf),
        AppKind::AccountLevel => {
            zoom::scopes::missing_for_account(granted, local_recording, onbehalf)
        }
    }
}

/// What `POST /api/v1/zoom_oauth_connections` carries. (No `Debug`: it holds a code.)
pub struct NewConnection {
    pub authorization_code: SecretString,
    pub redirect_uri: String,
    pub app_id: Option<String>,
    pub code_verifier: Option<SecretString>,
    pub is_local_recording_token_supported: Option<bool>,
    pub is_onbehalf_token_supported: Option<bool>,
    /// `Some(Value::Null)` counts as absent.
    pub metadata: Option<Value>,
    pub deduplication_key: Option<String>,
    /// Send a `state_change` webhook (state `connected`) when this creates a new
    /// connection: the hosted connect flow's customer may never see the browser
    /// come back.
    pub announce_new: bool,
    /// Turn on every capability the granted scopes cover (at least one must be),
    /// instead of the ones asked for: what `/api/v2` does, whose requests name none.
    pub capabilities_from_scopes: bool,
}

/// `PATCH`: `None` leaves a field alone; `Some(None)` clears a nullable one.
#[derive(Debug, Default)]
pub struct ConnectionChange {
    pub metadata: Option<Option<Value>>,
    pub deduplication_key: Option<Option<String>>,
    pub is_local_recording_token_supported: Option<bool>,
    pub is_onbehalf_token_supported: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("invalid input")]
    Invalid(BTreeMap<String, Vec<String>>),
    #[error("no such connection in this project")]
    NotFound,
    /// Zoom refused the code (bad, used or expired code, or a redirect URI that does
    /// not match the one used to get it). Carries Zoom's scrubbed reason.
    #[error("Zoom rejected the authorization code: {0}")]
    AuthorizationCodeRejected(String),
    #[error("the grant lacks scopes")]
    MissingScopes(Vec<&'static str>),
    /// An account-level app was authorised by a user without admin rights over
    /// the account.
    #[error("an account-level app needs an account admin's authorisation")]
    NotAccountAdmin,
    #[error("the Zoom user is not active")]
    ZoomUserNotActive(String),
    #[error("another connection of this app has this deduplication_key")]
    DeduplicationKeyTaken,
    /// A customer-managed connection was asked for a Zoom user who already has a
    /// connection to this app (one per app and user); nothing was changed.
    #[error("Zoom user {user_id} already has connection {connection_id} to this app")]
    UserAlreadyConnected {
        user_id: String,
        connection_id: String,
    },
    /// A customer-managed connection was asked for an account-level app whose Zoom
    /// account already has a connection (one per app and account); nothing was changed.
    #[error("Zoom account {account_id} already has connection {connection_id} to this app")]
    AccountAlreadyConnected {
        account_id: String,
        connection_id: String,
    },
    /// A customer-managed connection's `access_token_callback_url` gave no usable
    /// access token. The sentence names what the customer must fix; it never holds
    /// the URL or a token.
    #[error("{0}")]
    TokenCallbackFailed(String),
    /// A newer authorisation of the same Zoom user replaced this one at Zoom before
    /// it could be stored (Zoom keeps one grant per app and user).
    #[error("a newer authorisation of this Zoom user replaced this one")]
    Superseded,
    /// A refresh of the connection is running elsewhere; try again shortly.
    #[error("the connection is being refreshed")]
    Busy,
    /// A sync needs a connected connection with the local recording capability.
    #[error("the connection is disconnected")]
    Disconnected(Option<FailureData>),
    #[error("the connection does not have the local recording capability")]
    LocalRecordingOff,
    /// Zoom was unreachable, failed, limited us, or refused in a way that is not the
    /// caller's input.
    #[error(transparent)]
    Zoom(ZoomError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

#[derive(Default)]
pub(crate) struct Problems(BTreeMap<String, Vec<String>>);

impl Problems {
    pub(crate) fn add(&mut self, field: &str, problem: impl Into<String>) {
        self.0
            .entry(field.to_owned())
            .or_default()
            .push(problem.into());
    }
    pub(crate) fn into_result(self) -> Result<(), ConnectionError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConnectionError::Invalid(self.0))
        }
    }
}

pub(crate) fn invalid(field: &str, problem: impl Into<String>) -> ConnectionError {
    let mut p = Problems::default();
    p.add(field, problem);
    ConnectionError::Invalid(p.0)
}

/// Checks `metadata`: a non-empty object of string values, at most
/// [`MAX_METADATA_CHARS`] as JSON.
pub(crate) fn check_metadata(value: &Value, problems: &mut Problems) {
    let Some(object) = value.as_object() else {
        problems.add("metadata", "Must be a JSON object or null.");
        return;
    };
    if object.is_empty() {
        problems.add(
            "metadata",
            "Must not be an empty object; send null instead.",
        );
        return;
    }
    if object.values().any(|v| !v.is_string()) {
        problems.add("metadata", "Every value must be a string.");
        return;
    }
    // PostgreSQL cannot store NUL in jsonb; JSON can spell it `\u0000`.
    if object
        .iter()
        .any(|(k, v)| k.contains('\0') || v.as_str().is_some_and(|v| v.contains('\0')))
    {
        problems.add(
            "metadata",
            "Keys and values must not contain the NUL character (U+0000).",
        );
        return;
    }
    let chars = value.to_string().chars().count();
    if chars > MAX_METADATA_CHARS {
        problems.add(
            "metadata",
            format!("Must be at most {MAX_METADATA_CHARS} characters as JSON (it is {chars})."),
        );
    }
}

fn clean_deduplication_key(raw: &str, problems: &mut Problems) -> Option<String> {
    let key = raw.trim();
    if key.is_empty() {
        problems.add("deduplication_key", "Must not be empty; send null instead.");
        return None;
    }
    if key.chars().count() > MAX_DEDUPLICATION_KEY_CHARS {
        problems.add(
            "deduplication_key",
            format!("Must be at most {MAX_DEDUPLICATION_KEY_CHARS} characters."),
        );
        return None;
    }
    Some(key.to_owned())
}

/// An id quoted back in a sentence: at most 40 characters of it, printable only.
fn loggable_id(id: &str) -> String {
    id.trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(40)
        .collect()
}

pub(crate) fn internal(e: impl Into<anyhow::Error>) -> ConnectionError {
    ConnectionError::Internal(e.into())
}

/// The app a create is for: the named one, or the project's only one; a field
/// problem otherwise.
pub async fn resolve_app(
    keeper: &Keeper,
    project_id: &str,
    app_id: Option<&str>,
) -> Result<AppRow, ConnectionError> {
    if let Some(id) = app_id {
        return match apps::get(&*keeper.store, project_id, id.trim()).await {
            Ok(app) => Ok(app),
            // Attendee's sentences (bots/zoom_oauth_connections_api_utils.py).
            Err(apps::AppError::NotFound) => Err(invalid(
                "zoom_oauth_app_id",
                format!(
                    "Zoom OAuth App with id {} does not exist in this project.",
                    loggable_id(id)
                ),
            )),
            Err(apps::AppError::Store(e)) => Err(e.into()),
            Err(e) => Err(internal(e)),
        };
    }
    let page = keeper
        .store
        .list_apps(
            project_id,
            &PageRequest {
                cursor: None,
                limit: 2,
            },
        )
        .await?;
    match page.items.len() {
        0 => Err(invalid(
            "zoom_oauth_app_id",
            "No Zoom OAuth App found in this project. Please add a Zoom OAuth App first (POST /api/v1/zoom_oauth_apps).",
        )),
        1 if !page.has_more => Ok(page.items.into_iter().next().ok_or_else(|| {
            internal(anyhow::anyhow!("a page of one app had no app"))
        })?),
        _ => Err(invalid(
            "zoom_oauth_app_id",
            "This project has several Zoom OAuth apps. Say which one with zoom_oauth_app_id.",
        )),
    }
}

/// Validated create input.
struct CreateInput {
    local_recording: bool,
    onbehalf: bool,
    metadata: Option<Value>,
    deduplication_key: Option<String>,
    announce_new: bool,
}

/// Checks a create's fields as [`create`] will, without calling Zoom.
pub fn check_create(new: &NewConnection) -> Result<(), ConnectionError> {
    validate_create(new).map(|_| ())
}

fn validate_create(new: &NewConnection) -> Result<CreateInput, ConnectionError> {
    let mut problems = Problems::default();
    let code = new.authorization_code.expose_secret();
    if code.trim().is_empty() {
        problems.add("authorization_code", "Must not be empty.");
    } else if code.len() > MAX_CODE_CHARS {
        problems.add(
            "authorization_code",
            format!("Must be at most {MAX_CODE_CHARS} characters."),
        );
    }
    let redirect_uri = new.redirect_uri.trim();
    if redirect_uri.is_empty() {
        problems.add("redirect_uri", "Must not be empty.");
    } else if redirect_uri.len() > MAX_REDIRECT_URI_CHARS {
        problems.add(
            "redirect_uri",
            format!("Must be at most {MAX_REDIRECT_URI_CHARS} characters."),
        );
    } else if url::Url::parse(redirect_uri).is_err() {
        problems.add(
            "redirect_uri",
            "Must be an absolute URL, exactly the one used in the authorize request.",
        );
    }
    if let Some(v) = &new.code_verifier {
        if v.expose_secret().trim().is_empty() {
            problems.add("code_verifier", "Must not be empty; leave it out instead.");
        }
    }
    let local_recording = new.is_local_recording_token_supported.unwrap_or(true);
    let onbehalf = new.is_onbehalf_token_supported.unwrap_or(false);
    if !local_recording && !onbehalf {
        problems.add(
            "is_local_recording_token_supported",
            "At least one of is_local_recording_token_supported and is_onbehalf_token_supported must be true.",
        );
    }
    let metadata = new.metadata.clone().filter(|m| !m.is_null());
    if let Some(m) = &metadata {
        check_metadata(m, &mut problems);
    }
    let deduplication_key = new
        .deduplication_key
        .as_deref()
        .and_then(|k| clean_deduplication_key(k, &mut problems));
    problems.into_result()?;
    Ok(CreateInput {
        local_recording,
        onbehalf,
        metadata,
        deduplication_key,
        announce_new: new.announce_new,
    })
}

/// What a code exchange error means for a create.
fn exchange_error(e: ZoomError) -> ConnectionError {
    match e {
        ZoomError::GrantRevoked { .. } | ZoomError::BadRequest { .. } => {
            ConnectionError::AuthorizationCodeRejected(e.description())
        }
        other => ConnectionError::Zoom(other),
    }
}

/// `POST /api/v1/zoom_oauth_connections`: exchange the code, check it, then insert a
/// connection, update the user's existing one in place, or re-bind the one with the
/// same deduplication_key.
///
/// Zoom keeps one grant per app and user, and a code exchange supersedes the user's
/// earlier grant (DESIGN.md §5): so the grant this exchange yields is stored on the
/// user's existing connection even when the create then fails (missing scopes, an
/// inactive user), and it is never revoked — revoking would uninstall the app for
/// the user. Of concurrent creates for one user, the grant stored last is the one
/// Zoom issued last: each write is made only on the row it decided on (its fence),
/// after checking that the grant is still alive at Zoom.
///
/// From the code exchange on, the work runs in a task of its own: Zoom uses the
/// code up when it answers, so the grant must be stored even if the caller goes
/// away meanwhile.
pub async fn create(
    keeper: &Arc<Keeper>,
    project_id: &str,
    new: NewConnection,
) -> Result<ConnectionRow, ConnectionError> {
    let input = validate_create(&new)?;
    let app = resolve_app(keeper, project_id, new.app_id.as_deref()).await?;
    let creds = grant::app_credentials(keeper, &app).map_err(internal)?;
    let keeper = Arc::clone(keeper);
    let project_id = project_id.to_owned();
    tokio::spawn(
        async move { exchange_and_store(&keeper, &project_id, new, input, app, creds).await },
    )
    .await
    .unwrap_or_else(|e| {
        Err(internal(anyhow::anyhow!(
            "a connection create task failed: {e}"
        )))
    })
}

/// The part of [`create`] that runs whether or not its caller waits.
async fn exchange_and_store(
    keeper: &Keeper,
    project_id: &str,
    new: NewConnection,
    input: CreateInput,
    app: AppRow,
    creds: zoom::AppCredentials,
) -> Result<ConnectionRow, ConnectionError> {
    let verifier = new
        .code_verifier
        .as_ref()
        .map(|v| PkceVerifier::from_string(v.expose_secret().trim().to_owned()));
    // Zoom counts the token's lifetime from when it answered; counting ours from
    // before we asked keeps our idea of the expiry on the safe side.
    let requested_at = keeper.clock.now();
    let grant = keeper
        .zoom
        .exchange_code(
            &creds,
            &new.authorization_code,
            new.redirect_uri.trim(),
            verifier.as_ref(),
        )
        .await
        .map_err(exchange_error)?;
    let Some(refresh_token) = grant.refresh_token.clone() else {
        return Err(ConnectionError::Zoom(ZoomError::BadResponse {
            status: 200,
            detail: "the token endpoint answered without a refresh token".to_owned(),
        }));
    };
    let mut input = input;
    if new.capabilities_from_scopes {
        let local_recording = missing_scopes(app.kind, &grant.scopes, true, false).is_empty();
        let onbehalf = missing_scopes(app.kind, &grant.scopes, false, true).is_empty();
        // With neither, the local recording scopes are the ones reported missing.
        if local_recording || onbehalf {
            input.local_recording = local_recording;
            input.onbehalf = onbehalf;
        }
    }
    let missing = missing_scopes(
        app.kind,
        &grant.scopes,
        input.local_recording,
        input.onbehalf,
    );
    // Whose grant this is: without the user there is no connection to keep it on.
    let user = match identify(keeper, &grant).await {
        Ok(user) => user,
        Err(ZoomError::AccessTokenRejected { .. }) => return Err(ConnectionError::Superseded),
        Err(e) => {
            // Without the user there is no connection to keep the grant on.
            tracing::warn!(
                app_id = %app.id,
                error = %e,
                "a new grant's Zoom user could not be read; the grant is not stored"
            );
            return Err(if missing.is_empty() {
                ConnectionError::Zoom(e)
            } else {
                ConnectionError::MissingScopes(missing)
            });
        }
    };
    let fresh = FreshGrant {
        app: &app,
        user: &user,
        grant: &grant,
        access_token_expires_at: grant::access_token_expiry(requested_at, &grant),
        refresh_token: &refresh_token,
        input: &input,
    };
    let refusal = if app.kind == AppKind::AccountLevel && user.is_plain_member() {
        Some(ConnectionError::NotAccountAdmin)
    } else if !missing.is_empty() {
        Some(ConnectionError::MissingScopes(missing))
    } else if !user.is_active() {
        Some(ConnectionError::ZoomUserNotActive(
            user.status.clone().unwrap_or_default(),
        ))
    } else {
        None
    };
    if let Some(refusal) = refusal {
        keep_newest_grant(keeper, project_id, &fresh, &refusal).await;
        return Err(refusal);
    }

    let mut last_error = None;
    for _ in 0..UPSERT_ATTEMPTS {
        match upsert(keeper, project_id, &fresh).await {
            Ok(Upserted::Stored(row, revoke_old)) => {
                if let Some(old_refresh_token) = revoke_old {
                    // The previous user of a re-bound connection: ending their
                    // authorisation is the point.
                    keeper
                        .zoom
                        .revoke_best_effort(
                            &creds,
                            &old_refresh_token,
                            "a connection was re-bound to another Zoom user",
                        )
                        .await;
                }
                return Ok(row);
            }
            Ok(Upserted::Superseded(row)) => return Ok(row),
            // Lost a race: decide again from what is stored now.
            Ok(Upserted::Again) => {}
            Err(ConnectionError::Store(e)) => {
                tracing::warn!(error = %e, "storing a new grant failed; trying again");
                last_error = Some(ConnectionError::Store(e));
                tokio::time::sleep(STORE_RETRY).await;
            }
            Err(e) => {
                // Refused (a taken deduplication_key, a busy re-bind): the grant
                // still belongs on the user's connection, if there is one.
                keep_newest_grant(keeper, project_id, &fresh, &e).await;
                return Err(e);
            }
        }
    }
    let error = last_error.unwrap_or_else(|| {
        internal(anyhow::anyhow!(
            "the connection kept changing under concurrent creates"
        ))
    });
    keep_newest_grant(keeper, project_id, &fresh, &error).await;
    Err(error)
}

/// How long a create keeps asking Zoom whose a new grant is while Zoom is down or
/// limiting: the user's previous grant is already dead at Zoom, so giving up loses
/// their connection.
const IDENTIFY_WINDOW: std::time::Duration = std::time::Duration::from_secs(20);

/// `users/me` with a new grant's access token, tried again with backoff after an
/// outage or a rate limit for up to [`IDENTIFY_WINDOW`].
async fn identify(keeper: &Keeper, grant: &TokenGrant) -> Result<ZoomUser, ZoomError> {
    let give_up_at = std::time::Instant::now() + IDENTIFY_WINDOW;
    let mut attempt = 0;
    loop {
        match keeper.zoom.me(&grant.access_token).await {
            Err(e) if e.is_temporary() => {
                let wait = e
                    .retry_after()
                    .unwrap_or_else(|| zoom::error::backoff_delay(attempt))
                    .min(std::time::Duration::from_secs(5));
                if std::time::Instant::now() + wait >= give_up_at {
                    return Err(e);
                }
                tracing::warn!(error = %e, "reading a new grant's Zoom user failed; trying again");
                attempt += 1;
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

/// Whether `grant` is still the newest of its user at Zoom: a newer code exchange
/// kills the user's earlier access tokens (Zoom error 4741; 124 for a grant gone
/// otherwise). Unknown (Zoom unreachable) counts as alive: the grant was issued
/// moments ago.
async fn still_alive(keeper: &Keeper, grant: &TokenGrant) -> bool {
    match keeper.zoom.me(&grant.access_token).await {
        Err(ZoomError::AccessTokenRejected { .. }) => false,
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, "could not check that a new grant is still the newest; storing it");
            true
        }
    }
}

/// A create that will answer an error still stores its grant on the user's
/// existing connection (state, settings and capabilities unchanged), because
/// Zoom's newest grant is the only one that works. Nothing to do when the user has
/// no connection in the app. Best effort, retried a few times; logged.
async fn keep_newest_grant(
    keeper: &Keeper,
    project_id: &str,
    fresh: &FreshGrant<'_>,
    why: &ConnectionError,
) {
    for _ in 0..UPSERT_ATTEMPTS {
        let existing = match keeper
            .store
            .connection_by_user(&fresh.app.id, &fresh.user.id)
            .await
        {
            Ok(Some(existing)) if existing.project_id == project_id => existing,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "reading the user's connection to keep a new grant failed; trying again");
                tokio::time::sleep(STORE_RETRY).await;
                continue;
            }
        };
        if !still_alive(keeper, fresh.grant).await {
            return;
        }
        let mut replacement = fresh.replacement(keeper, &existing.id, &existing, false);
        replacement.keep_state = true;
        replacement.expected_fence = Some(existing.fence);
        replacement.metadata = existing.metadata.clone();
        replacement.deduplication_key = existing.deduplication_key.clone();
        replacement.is_local_recording_token_supported =
            existing.is_local_recording_token_supported;
        replacement.is_onbehalf_token_supported = existing.is_onbehalf_token_supported;
        replacement.next_sync_at = existing.next_sync_at;
        let event = NewConnectionEvent {
            kind: "reauthorization_failed".to_owned(),
            message: format!(
                "The user authorised the app again, but the new authorisation was refused ({why}). Zoom keeps only the newest grant of a user, so its tokens were stored here: the connection keeps working with them."
            ),
            data: Some(json!({"scopes": fresh.grant.scopes})),
        };
        match keeper
            .store
            .replace_connection_grant(project_id, &existing.id, &replacement, &event, None)
            .await
        {
            Ok(Some(_)) => {
                tracing::info!(connection_id = %existing.id, "a refused re-authorisation's grant was stored on the user's connection");
                return;
            }
            Ok(None) | Err(StoreError::Conflict { .. }) => {}
            Err(e) => {
                tracing::warn!(connection_id = %existing.id, error = %e, "storing a refused re-authorisation's grant failed; trying again");
                tokio::time::sleep(STORE_RETRY).await;
            }
        }
    }
    tracing::error!(
        app_id = %fresh.app.id,
        "a refused re-authorisation's grant could not be stored on the user's connection"
    );
}

struct FreshGrant<'a> {
    app: &'a AppRow,
    user: &'a ZoomUser,
    grant: &'a TokenGrant,
    access_token_expires_at: DateTime<Utc>,
    refresh_token: &'a SecretString,
    input: &'a CreateInput,
}

impl FreshGrant<'_> {
    fn replacement(
        &self,
        keeper: &Keeper,
        id: &str,
        existing: &ConnectionRow,
        clear_meetings: bool,
    ) -> GrantReplacement {
        let now = keeper.clock.now();
        GrantReplacement {
            user_id: self.user.id.clone(),
            account_id: self.user.account_id.clone(),
            email: non_empty(&self.user.email),
            pmi: self.user.pmi.clone(),
            personal_meeting_url: self.user.personal_meeting_url.clone(),
            metadata: self
                .input
                .metadata
                .clone()
                .or_else(|| existing.metadata.clone()),
            deduplication_key: self
                .input
                .deduplication_key
                .clone()
                .or_else(|| existing.deduplication_key.clone()),
            is_local_recording_token_supported: self.input.local_recording,
            is_onbehalf_token_supported: self.input.onbehalf,
            scopes: self.grant.scopes.clone(),
            refresh_token: keeper
                .vault
                .seal_str(grant::refresh_slot(id), self.refresh_token.expose_secret()),
            access_token: keeper.vault.seal_str(
                grant::access_slot(id),
                self.grant.access_token.expose_secret(),
            ),
            access_token_expires_at: self.access_token_expires_at,
            refresh_due_at: grant::next_refresh_due(now, keeper.config.token_refresh_max_age),
            next_sync_at: self.input.local_recording.then_some(now),
            clear_meetings,
            keep_state: false,
            expected_fence: Some(existing.fence),
        }
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// What one [`upsert`] decided.
enum Upserted {
    /// Stored; on a re-bind, with the previous user's refresh token to revoke.
    Stored(ConnectionRow, Option<SecretString>),
    /// A newer authorisation of the user replaced this grant at Zoom; the user's
    /// connection (as stored now) is the answer.
    Superseded(ConnectionRow),
    /// A concurrent write won a race: decide again.
    Again,
}

/// One decision and write.
async fn upsert(
    keeper: &Keeper,
    project_id: &str,
    fresh: &FreshGrant<'_>,
) -> Result<Upserted, ConnectionError> {
    let store = &keeper.store;
    let app_id = &fresh.app.id;
    let by_user = store.connection_by_user(app_id, &fresh.user.id).await?;
    let by_key = match &fresh.input.deduplication_key {
        Some(key) => store.connection_by_deduplication_key(app_id, key).await?,
        None => None,
    };

    if let Some(existing) = by_user {
        if let Some(other) = &by_key {
            if other.id != existing.id {
                return Err(ConnectionError::DeduplicationKeyTaken);
            }
        }
        // Checked after the read the write is fenced on: if a newer grant is stored
        // after this, its write moved the fence and ours fails.
        if !still_alive(keeper, fresh.grant).await {
            return Ok(match store.connection_by_id(&existing.id).await? {
                Some(now) => Upserted::Superseded(now),
                None => Upserted::Again,
            });
        }
        let replacement = fresh.replacement(keeper, &existing.id, &existing, false);
        let was_disconnected = existing.state == ConnectionState::Disconnected;
        let event = NewConnectionEvent {
            kind: "reconnected".to_owned(),
            message: if was_disconnected {
                "The user authorised the app again; the connection is connected again.".to_owned()
            } else {
                "The user authorised the app again; the connection's tokens were replaced."
                    .to_owned()
            },
            data: Some(json!({"was": existing.state.as_str()})),
        };
        return match store
            .replace_connection_grant(
                project_id,
                &existing.id,
                &replacement,
                &event,
                was_disconnected.then_some(&grant::StateChange as &dyn OutboxSource),
            )
            .await
        {
            Ok(Some(row)) => Ok(Upserted::Stored(row, None)),
            Ok(None) => Ok(Upserted::Again),
            Err(StoreError::Conflict {
                constraint: "connections_app_deduplication_key",
            }) => Err(ConnectionError::DeduplicationKeyTaken),
            Err(StoreError::Conflict { .. }) => Ok(Upserted::Again),
            Err(e) => Err(e.into()),
        };
    }

    if let Some(existing) = by_key {
        // Same deduplication_key, another Zoom user: the connection now belongs to
        // the new user, and the old user's grant is revoked after the commit —
        // under the connection's lease, so no refresh rotates the token we revoke.
        let claimed = claim_for_change(keeper, &existing.id).await?;
        if claimed.user_id != existing.user_id
            || claimed.deduplication_key != existing.deduplication_key
        {
            release_claim(keeper, &claimed).await;
            return Ok(Upserted::Again);
        }
        let old_refresh_token = claimed
            .refresh_token
            .as_ref()
            .and_then(|sealed| open_logged(keeper, grant::refresh_slot(&claimed.id), sealed));
        let replacement = fresh.replacement(keeper, &claimed.id, &claimed, true);
        let was_disconnected = claimed.state == ConnectionState::Disconnected;
        let event = NewConnectionEvent {
            kind: "rebound".to_owned(),
            message: "The connection was re-bound to another Zoom user with the same deduplication_key; the previous user's grant is revoked and the meeting index cleared.".to_owned(),
            data: Some(json!({
                "previous_user_id": claimed.user_id,
                "user_id": fresh.user.id,
            })),
        };
        return match store
            .replace_connection_grant(
                project_id,
                &claimed.id,
                &replacement,
                &event,
                was_disconnected.then_some(&grant::StateChange as &dyn OutboxSource),
            )
            .await
        {
            Ok(Some(row)) => Ok(Upserted::Stored(row, old_refresh_token)),
            Ok(None) | Err(StoreError::Conflict { .. }) => {
                release_claim(keeper, &claimed).await;
                Ok(Upserted::Again)
            }
            Err(e) => {
                release_claim(keeper, &claimed).await;
                Err(e.into())
            }
        };
    }

    let id = IdKind::Connection.generate();
    let now = keeper.clock.now();
    let placeholder = ConnectionRow {
        id: id.clone(),
        project_id: project_id.to_owned(),
        app_id: app_id.clone(),
        user_id: String::new(),
        account_id: String::new(),
        email: None,
        pmi: None,
        personal_meeting_url: None,
        state: ConnectionState::Connected,
        connection_failure_data: None,
        metadata: None,
        deduplication_key: None,
        is_local_recording_token_supported: true,
        is_onbehalf_token_supported: false,
        scopes: Vec::new(),
        refresh_token: None,
        access_token: None,
        access_token_expires_at: None,
        lease_owner: None,
        lease_until: None,
        fence: 0,
        refresh_due_at: None,
        last_attempted_sync_at: None,
        last_successful_sync_at: None,
        next_sync_at: None,
        last_successful_token_refresh_at: None,
        created_at: now,
        updated_at: now,
        sync_requested_at: None,
        access_token_callback_url: None,
        sync_pass_started_at: None,
        sync_users_done: None,
        sync_users_total: None,
    };
    let r = fresh.replacement(keeper, &id, &placeholder, false);
    let row = ConnectionRow {
        user_id: r.user_id,
        account_id: r.account_id,
        email: r.email,
        pmi: r.pmi,
        personal_meeting_url: r.personal_meeting_url,
        metadata: r.metadata,
        deduplication_key: r.deduplication_key,
        is_local_recording_token_supported: r.is_local_recording_token_supported,
        is_onbehalf_token_supported: r.is_onbehalf_token_supported,
        scopes: r.scopes,
        refresh_token: Some(r.refresh_token),
        access_token: Some(r.access_token),
        access_token_expires_at: Some(r.access_token_expires_at),
        refresh_due_at: Some(r.refresh_due_at),
        next_sync_at: r.next_sync_at,
        sync_requested_at: r.next_sync_at,
        last_successful_token_refresh_at: Some(now),
        ..placeholder
    };
    let event = NewConnectionEvent {
        kind: "created".to_owned(),
        message: format!(
            "Connected Zoom user {} of account {}.",
            row.user_id, row.account_id
        ),
        data: Some(json!({"scopes": row.scopes})),
    };
    let announce = fresh
        .input
        .announce_new
        .then_some(&grant::StateChange as &dyn OutboxSource);
    match store.insert_connection(&row, &event, announce).await {
        Ok(()) => Ok(Upserted::Stored(row, None)),
        // Another create for this user or key won the race: decide again (an older
        // grant that got in first is replaced, fenced, by the newer one).
        Err(StoreError::Conflict { .. }) => Ok(Upserted::Again),
        Err(e) => Err(e.into()),
    }
}

/// Claims connection `id`'s lease whatever its state, waiting up to
/// [`crate::domain::tokens::LEASE_WAIT`] for a refresh running elsewhere: a change that is
/// followed by revoking the grant it read (delete, re-bind) must not race a refresh
/// that rotates that grant.
async fn claim_for_change(keeper: &Keeper, id: &str) -> Result<ConnectionRow, ConnectionError> {
    let give_up_at = std::time::Instant::now() + crate::domain::tokens::LEASE_WAIT;
    loop {
        if let Some(claimed) = keeper
            .store
            .claim_connection_lease_any_state(
                id,
                keeper.tokens.owner(),
                keeper.config.token_lease_duration,
            )
            .await?
        {
            return Ok(claimed);
        }
        if keeper.store.connection_by_id(id).await?.is_none() {
            return Err(ConnectionError::NotFound);
        }
        if std::time::Instant::now() >= give_up_at {
            return Err(ConnectionError::Busy);
        }
        tokio::time::sleep(std::time::Duration::from_millis(75)).await;
    }
}

async fn release_claim(keeper: &Keeper, claimed: &ConnectionRow) {
    if let Err(e) = keeper
        .store
        .release_connection_lease(&claimed.id, claimed.fence, None)
        .await
    {
        tracing::warn!(connection_id = %claimed.id, error = %e, "releasing a connection's lease failed; it lapses on its own");
    }
}

/// Opens a sealed token; a failure (which would mean tampering or a lost key) is
/// logged and treated as no token.
fn open_logged(keeper: &Keeper, slot: Slot<'_>, sealed: &Sealed) -> Option<SecretString> {
    match keeper.vault.open_str(slot, sealed) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "a sealed connection token does not open");
            None
        }
    }
}

pub async fn get(
    keeper: &Keeper,
    project_id: &str,
    id: &str,
) -> Result<ConnectionRow, ConnectionError> {
    if !IdKind::Connection.matches(id) {
        return Err(ConnectionError::NotFound);
    }
    keeper
        .store
        .get_connection(project_id, id)
        .await?
        .ok_or(ConnectionError::NotFound)
}

/// Filters as given in a query string (text), before checking.
#[derive(Debug, Default)]
pub struct FilterInput {
    pub app_id: Option<String>,
    pub user_id: Option<String>,
    pub account_id: Option<String>,
    pub state: Option<String>,
    pub deduplication_key: Option<String>,
    /// `key=value`: connections whose metadata has this key with this value.
    pub metadata: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub meeting_sync_status: Option<MeetingSyncStatus>,
}

pub async fn list(
    keeper: &Keeper,
    project_id: &str,
    filter: FilterInput,
    page: &PageRequest,
) -> Result<Page<ConnectionRow>, ConnectionError> {
    let non_blank = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let state = match non_blank(filter.state) {
        None => None,
        Some(s) => Some(
            ConnectionState::parse(s.trim())
                .ok_or_else(|| invalid("state", "Must be connected or disconnected."))?,
        ),
    };
    let metadata = match non_blank(filter.metadata) {
        None => None,
        Some(m) => match m.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Some((key.trim().to_owned(), value.trim().to_owned()))
            }
            _ => {
                return Err(invalid(
                    "metadata",
                    "Write key=value, e.g. customer=acme: connections whose metadata has this key with this value.",
                ))
            }
        },
    };
    let filter = ConnectionFilter {
        app_id: non_blank(filter.app_id),
        user_id: non_blank(filter.user_id),
        account_id: non_blank(filter.account_id),
        state,
        deduplication_key: non_blank(filter.deduplication_key),
        metadata,
        created_after: filter.created_after,
        created_before: filter.created_before,
        meeting_sync_status: filter.meeting_sync_status,
    };
    Ok(keeper
        .store
        .list_connections(project_id, &filter, page)
        .await?)
}

pub async fn update(
    keeper: &Keeper,
    project_id: &str,
    id: &str,
    change: ConnectionChange,
) -> Result<ConnectionRow, ConnectionError> {
    let current = get(keeper, project_id, id).await?;
    let mut problems = Problems::default();
    let metadata = change.metadata.map(|m| {
        let m = m.filter(|v| !v.is_null());
        if let Some(v) = &m {
            check_metadata(v, &mut problems);
        }
        m
    });
    let deduplication_key = change
        .deduplication_key
        .map(|k| k.and_then(|k| clean_deduplication_key(&k, &mut problems)));
    let local = change
        .is_local_recording_token_supported
        .unwrap_or(current.is_local_recording_token_supported);
    let onbehalf = change
        .is_onbehalf_token_supported
        .unwrap_or(current.is_onbehalf_token_supported);
    if !local && !onbehalf {
        problems.add(
            "is_local_recording_token_supported",
            "At least one of is_local_recording_token_supported and is_onbehalf_token_supported must be true.",
        );
    }
    problems.into_result()?;
    // Turning a capability on needs the scopes the user granted to cover it. A
    // customer-managed connection's scopes are unknown (its tokens come from the
    // customer): Zoom itself refuses a call its token does not cover.
    let turning_on_local = local && !current.is_local_recording_token_supported;
    let turning_on_onbehalf = onbehalf && !current.is_onbehalf_token_supported;
    let missing = if current.access_token_callback_url.is_some() {
        Vec::new()
    } else {
        let kind = keeper
            .store
            .get_app(project_id, &current.app_id)
            .await?
            .map_or(AppKind::UserLevel, |app| app.kind);
        missing_scopes(kind, &current.scopes, turning_on_local, turning_on_onbehalf)
    };
    if !missing.is_empty() {
        return Err(ConnectionError::MissingScopes(missing));
    }
    let update = ConnectionSettingsUpdate {
        metadata,
        deduplication_key,
        is_local_recording_token_supported: change.is_local_recording_token_supported,
        is_onbehalf_token_supported: change.is_onbehalf_token_supported,
    };
    match keeper
        .store
        .update_connection_settings(project_id, id, &update)
        .await
    {
        Ok(Some(row)) => Ok(row),
        Ok(None) => Err(ConnectionError::NotFound),
        Err(StoreError::Conflict { .. }) => Err(ConnectionError::DeduplicationKeyTaken),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the connection and its meeting index, then revokes its grant at Zoom
/// (best effort: logged and counted, never a failure of the delete). A
/// customer-managed connection holds no grant: nothing is revoked. Revoking ends
/// the user's authorisation of the app, which is what a delete means; it is done
/// under the connection's lease, so the token revoked is the one stored (no refresh
/// can rotate it between the read and the revoke).
pub async fn delete(keeper: &Keeper, project_id: &str, id: &str) -> Result<(), ConnectionError> {
    // 404 for a connection of another project, before touching its lease.
    get(keeper, project_id, id).await?;
    let mut deleted = None;
    for _ in 0..UPSERT_ATTEMPTS {
        let claimed = claim_for_change(keeper, id).await?;
        match keeper
            .store
            .delete_connection(project_id, id, Some(claimed.fence))
            .await
        {
            Ok(Some(row)) => {
                deleted = Some(row);
                break;
            }
            // Taken over between the claim and the delete: claim again.
            Ok(None) => {}
            Err(e) => {
                release_claim(keeper, &claimed).await;
                return Err(e.into());
            }
        }
    }
    let Some(row) = deleted else {
        return Err(ConnectionError::Busy);
    };
    let token = row
        .refresh_token
        .as_ref()
        .and_then(|sealed| open_logged(keeper, grant::refresh_slot(&row.id), sealed));
    if let Some(token) = token {
        match keeper.store.get_app(project_id, &row.app_id).await {
            Ok(Some(app)) => match grant::app_credentials(keeper, &app) {
                Ok(creds) => {
                    keeper
                        .zoom
                        .revoke_best_effort(&creds, &token, "the connection was deleted")
                        .await
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot open the app's client secret to revoke a deleted connection's grant")
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the app to revoke a deleted connection's grant")
            }
        }
    }
    Ok(())
}

/// What [`validate`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// Zoom accepted the grant: the connection is connected.
    Healthy,
    /// It was disconnected by a bad client secret (its grant kept) and Zoom accepts
    /// the grant again: connected again, with a `state_change` webhook.
    Reconnected,
    /// The grant is gone (now, or before): disconnected; the user must authorise
    /// the app again.
    Disconnected,
}

/// Checks with Zoom, now, that connection `id`'s grant works, and re-enables it if
/// it was disconnected only because Zoom refused the app's client secret (its grant
/// was kept) and Zoom accepts it again (Recall's `validate/`). A connected
/// connection is checked by reading its Zoom user with its access token (through
/// the broker: refreshed if needed; a refused grant disconnects it, as anywhere).
/// The outcome is written to the connection's log.
pub async fn validate(
    keeper: &Arc<Keeper>,
    project_id: &str,
    id: &str,
) -> Result<Validation, TokenError> {
    let row = match get(keeper, project_id, id).await {
        Ok(row) => row,
        Err(ConnectionError::NotFound) => return Err(TokenError::NotFound),
        Err(e) => return Err(TokenError::Internal(format!("reading the connection: {e}"))),
    };
    let kept_grant = row
        .connection_failure_data
        .as_ref()
        .is_some_and(|f| f.code == grant::BAD_CLIENT_SECRET);
    let validation = match row.state {
        ConnectionState::Connected => {
            let checked = tokens::with_access_token(keeper, &row, |token| {
                let keeper = Arc::clone(keeper);
                async move { keeper.zoom.me(&token).await }
            })
            .await;
            match checked {
                Ok(_) => Validation::Healthy,
                // The broker disconnected it and logged why.
                Err(BrokeredCallError::Token(TokenError::Disconnected(_))) => {
                    Validation::Disconnected
                }
                Err(BrokeredCallError::Token(e)) => return Err(e),
                Err(BrokeredCallError::Zoom(e)) => return Err(tokens::zoom_call_error(e)),
            }
        }
        ConnectionState::Disconnected if kept_grant => {
            let claimed = claim_for_change(keeper, id).await.map_err(|e| match e {
                ConnectionError::NotFound => TokenError::NotFound,
                ConnectionError::Busy => TokenError::Busy,
                e => TokenError::Internal(format!("claiming the connection: {e}")),
            })?;
            match tokens::refresh_claimed(keeper, &claimed).await {
                Ok(_) if claimed.state == ConnectionState::Disconnected => Validation::Reconnected,
                Ok(_) => Validation::Healthy,
                Err(TokenError::Disconnected(_)) => Validation::Disconnected,
                Err(e) => return Err(e),
            }
        }
        ConnectionState::Disconnected => Validation::Disconnected,
    };
    let message = match validation {
        Validation::Healthy => "Validated on request: Zoom accepted the grant.".to_owned(),
        Validation::Reconnected => {
            "Validated on request: Zoom accepts the grant again; the connection is connected again."
                .to_owned()
        }
        Validation::Disconnected => {
            let why = get(keeper, project_id, id)
                .await
                .ok()
                .and_then(|r| r.connection_failure_data)
                .map(|f| f.error)
                .unwrap_or_default();
            format!("Validated on request: the authorisation is gone, so the connection stays disconnected. {why}").trim_end().to_owned()
        }
    };
    let event = NewConnectionEvent {
        kind: "validated".to_owned(),
        message,
        data: None,
    };
    if let Err(e) = keeper.store.insert_connection_event(id, &event).await {
        tracing::warn!(connection_id = %id, error = %e, "recording a validation in the connection's log failed");
    }
    Ok(validation)
}

/// `POST …/{id}/sync`: asks for a meeting sync now (the meeting sync worker runs it).
pub async fn schedule_sync(
    keeper: &Keeper,
    project_id: &str,
    id: &str,
) -> Result<(), ConnectionError> {
    let row = get(keeper, project_id, id).await?;
    if row.state == ConnectionState::Disconnected {
        return Err(ConnectionError::Disconnected(row.connection_failure_data));
    }
    if !row.is_local_recording_token_supported {
        return Err(ConnectionError::LocalRecordingOff);
    }
    if keeper
        .store
        .schedule_connection_sync(project_id, id)
        .await?
    {
        Ok(())
    } else {
        Err(ConnectionError::NotFound)
    }
}

/// The connection logs of the whole project matching `filter`, newest first.
pub async fn log(
    keeper: &Keeper,
    project_id: &str,
    filter: &ConnectionEventFilter,
    page: &PageRequest,
) -> Result<Page<ConnectionEventRow>, ConnectionError> {
    Ok(keeper
        .store
        .list_project_connection_events(project_id, filter, page)
        .await?)
}

pub async fn events(
    keeper: &Keeper,
    project_id: &str,
    id: &str,
    page: &PageRequest,
) -> Result<Page<ConnectionEventRow>, ConnectionError> {
    // 404 for a connection that is not in the project, even with no events.
    get(keeper, project_id, id).await?;
    Ok(keeper
        .store
        .list_connection_events(project_id, id, page)
        .await?)
}

/// Event kinds written routinely (every refresh, every sync) that the event log
/// drops once a connection has more than [`EVENTS_KEPT_PER_CONNECTION`] newer
/// events. Every other kind — created, reconnected, rebound, disconnected,
/// deauthorized, revoke_failed — records a change a person may need to explain
/// later, happens only on a user's or operator's action, and is kept for the
/// connection's life.
pub const ROUTINE_EVENT_KINDS: &[&str] = &["token_refreshed", "sync_completed"];
/// How many of its newest events (of any kind) a connection's log always keeps.
pub const EVENTS_KEPT_PER_CONNECTION: u32 = 200;
/// Connections walked per pruning batch, and batches per housekeeping step.
const PRUNE_BATCH: u32 = 500;
const PRUNE_BATCHES_PER_STEP: usize = 10;

/// One housekeeping step over the event logs: walks up to a few thousand
/// connections from `cursor` (where the last step stopped; `None` starts from the
/// first), dropping routine events beyond each log's newest
/// [`EVENTS_KEPT_PER_CONNECTION`]. Returns how many events it deleted and leaves
/// `cursor` where the next step goes on.
pub async fn prune_event_logs(
    keeper: &Keeper,
    cursor: &mut Option<String>,
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for _ in 0..PRUNE_BATCHES_PER_STEP {
        let step = keeper
            .store
            .prune_connection_events(
                cursor.as_deref(),
                PRUNE_BATCH,
                EVENTS_KEPT_PER_CONNECTION,
                ROUTINE_EVENT_KINDS,
            )
            .await?;
        deleted += step.deleted;
        *cursor = step.next_after;
        if cursor.is_none() {
            break;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_rules() {
        let check = |v: Value| {
            let mut p = Problems::default();
            check_metadata(&v, &mut p);
            p.0.is_empty()
        };
        assert!(check(json!({"a": "b"})));
        assert!(!check(json!({})));
        assert!(!check(json!({"a": 1})));
        assert!(!check(json!(["a"])));
        assert!(!check(json!("a")));
        assert!(!check(json!({"a": "x".repeat(1000)})));
        assert!(check(json!({"a": "x".repeat(990)})));
    }
}
