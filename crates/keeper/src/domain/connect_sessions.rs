//! Hosted connect (DESIGN.md §12): a customer asks for a link, sends its user there,
//! and gets the user back with a connection — without writing OAuth code.
//!
//! Rules kept here: what a session may ask for (checked like a connection create);
//! that a session is used once and expires; that the `state` of Zoom's redirect is
//! unguessable, bound to one session, and only the newest one counts; that PKCE
//! S256 protects the code; that the connection is made by exactly the domain path
//! of `POST /api/v1/zoom_oauth_connections` ([`connections::create`]); and that
//! zoomkeeper redirects only to the session's own `return_url`. The link token, the
//! `state`, the code and the verifier never appear in a log line, page or error.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};
use zoom::PkceVerifier;

use crate::core::ids::IdKind;
use crate::core::vault::Slot;
use crate::domain::connections::{self, ConnectionError, NewConnection};
use crate::domain::fields::FieldProblems;
use crate::storage::{
    AppRow, ConnectSessionOutcome, ConnectSessionRow, ConnectSessionStatus, Page, PageRequest,
    ProjectRow, StoreError,
};
use crate::Keeper;

/// How long a session lasts unless the customer says otherwise.
pub const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(30 * 60);
/// Longest a session may last.
pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Shortest a session may last: time enough to sign in at Zoom.
pub const MIN_EXPIRES_IN: Duration = Duration::from_secs(60);
const MAX_RETURN_URL_CHARS: usize = 2048;

/// `{public_url}/connect/zoom/callback`: the redirect URL a Zoom app must list for
/// hosted connect.
pub fn callback_url(public_url: &str) -> String {
    format!("{public_url}/connect/zoom/callback")
}

pub struct NewConnectSession {
    pub app_id: Option<String>,
    pub return_url: String,
    pub metadata: Option<Value>,
    pub deduplication_key: Option<String>,
    pub is_local_recording_token_supported: Option<bool>,
    pub is_onbehalf_token_supported: Option<bool>,
    /// Seconds.
    pub expires_in: Option<u64>,
}

/// A session with the link to send the user to (shown once: it is a bearer link).
pub struct Created {
    pub row: ConnectSessionRow,
    pub url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectSessionError {
    #[error("invalid input")]
    Invalid(std::collections::BTreeMap<String, Vec<String>>),
    #[error("no such connect session in this project")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a session's status reads as: `pending`, `completed`, `failed` or `expired`
/// (a session still in progress past its expiry). A code being exchanged right now
/// is still `pending`.
pub fn status_of(row: &ConnectSessionRow, now: DateTime<Utc>) -> &'static str {
    match row.status {
        ConnectSessionStatus::Pending | ConnectSessionStatus::Exchanging
            if row.expires_at <= now =>
        {
            "expired"
        }
        ConnectSessionStatus::Exchanging => "pending",
        status => status.as_str(),
    }
}

/// Where the flow stands: like [`status_of`], but a code being exchanged is
/// `exchanging`, so nothing else can start.
fn phase(row: &ConnectSessionRow, now: DateTime<Utc>) -> &'static str {
    match row.status {
        ConnectSessionStatus::Pending if row.expires_at <= now => "expired",
        status => status.as_str(),
    }
}

pub async fn create(
    keeper: &Keeper,
    project_id: &str,
    public_url: &str,
    new: NewConnectSession,
) -> Result<Created, ConnectSessionError> {
    let mut problems = FieldProblems::default();
    let return_url = check_return_url(&new.return_url, &mut problems);
    let expires_in = match new.expires_in {
        None => DEFAULT_EXPIRES_IN,
        Some(s) if (MIN_EXPIRES_IN.as_secs()..=MAX_EXPIRES_IN.as_secs()).contains(&s) => {
            Duration::from_secs(s)
        }
        Some(_) => {
            problems.add(
                "expires_in",
                format!(
                    "Must be between {} and {} seconds.",
                    MIN_EXPIRES_IN.as_secs(),
                    MAX_EXPIRES_IN.as_secs()
                ),
            );
            DEFAULT_EXPIRES_IN
        }
    };
    // The connection fields are checked exactly as the create will check them.
    let as_create = NewConnection {
        authorization_code: SecretString::from("checked-later".to_owned()),
        redirect_uri: callback_url(public_url),
        app_id: new.app_id.clone(),
        code_verifier: None,
        is_local_recording_token_supported: new.is_local_recording_token_supported,
        is_onbehalf_token_supported: new.is_onbehalf_token_supported,
        metadata: new.metadata.clone(),
        deduplication_key: new.deduplication_key.clone(),
        announce_new: true,
        capabilities_from_scopes: false,
    };
    if let Err(ConnectionError::Invalid(fields)) = connections::check_create(&as_create) {
        for (field, messages) in fields {
            for message in messages {
                problems.add(&field, message);
            }
        }
    }
    let app = match connections::resolve_app(keeper, project_id, new.app_id.as_deref()).await {
        Ok(app) => Some(app),
        Err(ConnectionError::Invalid(fields)) => {
            for (field, messages) in fields {
                for message in messages {
                    problems.add(&field, message);
                }
            }
            None
        }
        Err(ConnectionError::Store(e)) => return Err(e.into()),
        Err(e) => {
            problems.add("zoom_oauth_app_id", e.to_string());
            None
        }
    };
    problems.into_result(ConnectSessionError::Invalid)?;
    let (Some(app), Some(return_url)) = (app, return_url) else {
        return Err(ConnectSessionError::Invalid(FieldProblems::one(
            "zoom_oauth_app_id",
            "No Zoom OAuth app could be chosen.",
        )));
    };

    let token = random_token();
    let now = keeper.clock.now();
    let row = ConnectSessionRow {
        id: IdKind::ConnectSession.generate(),
        project_id: project_id.to_owned(),
        app_id: app.id,
        return_url,
        metadata: new.metadata.filter(|m| !m.is_null()),
        deduplication_key: new
            .deduplication_key
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty()),
        is_local_recording_token_supported: new.is_local_recording_token_supported,
        is_onbehalf_token_supported: new.is_onbehalf_token_supported,
        token_hash: hash(&token),
        state_hash: None,
        code_verifier: None,
        status: ConnectSessionStatus::Pending,
        connection_id: None,
        error: None,
        error_description: None,
        expires_at: now + chrono::Duration::from_std(expires_in).unwrap_or_default(),
        created_at: now,
        updated_at: now,
    };
    keeper.store.insert_connect_session(&row).await?;
    Ok(Created {
        url: format!("{public_url}/connect/{}", token.expose_secret()),
        row,
    })
}

pub async fn get(
    keeper: &Keeper,
    project_id: &str,
    id: &str,
) -> Result<ConnectSessionRow, ConnectSessionError> {
    if !IdKind::ConnectSession.matches(id) {
        return Err(ConnectSessionError::NotFound);
    }
    keeper
        .store
        .get_connect_session(project_id, id)
        .await?
        .ok_or(ConnectSessionError::NotFound)
}

/// The project's sessions, newest first.
pub async fn list(
    keeper: &Keeper,
    project_id: &str,
    page: &PageRequest,
) -> Result<Page<ConnectSessionRow>, ConnectSessionError> {
    Ok(keeper.store.list_connect_sessions(project_id, page).await?)
}

/// `return_url`: an absolute http(s) URL without credentials or a fragment.
fn check_return_url(raw: &str, problems: &mut FieldProblems) -> Option<String> {
    const FIELD: &str = "return_url";
    let text = raw.trim();
    if text.is_empty() || text.len() > MAX_RETURN_URL_CHARS {
        problems.add(
            FIELD,
            format!("Must be an http or https URL of at most {MAX_RETURN_URL_CHARS} characters."),
        );
        return None;
    }
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
            if !url.username().is_empty() || url.password().is_some() {
                problems.add(FIELD, "Must not carry a user name or password.");
                None
            } else if url.fragment().is_some() {
                problems.add(
                    FIELD,
                    "Must not have a #fragment: zoomkeeper adds query parameters to it.",
                );
                None
            } else {
                Some(url.to_string())
            }
        }
        Ok(_) => {
            problems.add(FIELD, "Must be an http or https URL.");
            None
        }
        Err(e) => {
            problems.add(FIELD, format!("Is not a URL: {e}."));
            None
        }
    }
}

fn random_token() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn hash(secret: &SecretString) -> Vec<u8> {
    Sha256::digest(secret.expose_secret().as_bytes()).to_vec()
}

// ---------------------------------------------------------------------------
// The pages.

/// Why the flow cannot go on. `return_to` is the customer's URL with `error` and
/// `error_description` added, when the session is known.
#[derive(Debug)]
pub struct Refusal {
    /// `session_not_found`, `session_expired`, `session_used`, `invalid_state`,
    /// `access_denied`, `internal_error`, or a connection create's code.
    pub error: String,
    /// A sentence the user can act on.
    pub description: String,
    pub return_to: Option<String>,
}

fn refusal(
    error: &str,
    description: impl Into<String>,
    session: Option<&ConnectSessionRow>,
) -> Refusal {
    let description = description.into();
    Refusal {
        return_to: session
            .map(|s| return_url(s, &[("error", error), ("error_description", &description)])),
        error: error.to_owned(),
        description,
    }
}

/// The session's `return_url` with `params` and `session_id` added.
fn return_url(session: &ConnectSessionRow, params: &[(&str, &str)]) -> String {
    match url::Url::parse(&session.return_url) {
        Ok(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
                q.append_pair("session_id", &session.id);
            }
            url.to_string()
        }
        // Checked at creation; kept as stored if it somehow does not parse.
        Err(_) => session.return_url.clone(),
    }
}

/// What the landing page shows.
pub struct Landing {
    pub session: ConnectSessionRow,
    pub project: ProjectRow,
    pub app: AppRow,
}

impl Landing {
    /// What the user grants, in words.
    pub fn grants(&self) -> Vec<&'static str> {
        let mut out = vec!["Read your Zoom user profile and your meetings"];
        if self.session.is_local_recording_token_supported != Some(false) {
            out.push(
                "Let a meeting bot record your meetings locally, without asking you each time",
            );
        }
        if self.session.is_onbehalf_token_supported == Some(true) {
            out.push("Let a meeting bot join meetings on your behalf");
        }
        out
    }
}

/// The session of link token `token`, if it can still be used.
async fn usable(keeper: &Keeper, token: &str) -> Result<ConnectSessionRow, Refusal> {
    let session = keeper
        .store
        .connect_session_by_token(&hash(&SecretString::from(token.to_owned())))
        .await
        .map_err(store_refusal)?
        .ok_or_else(|| {
            refusal(
                "session_not_found",
                "This link is not valid. Ask the app that sent you here for a new one.",
                None,
            )
        })?;
    match phase(&session, keeper.clock.now()) {
        "pending" => Ok(session),
        "expired" => Err(refusal(
            "session_expired",
            "This link has expired. Go back and start connecting your Zoom account again.",
            Some(&session),
        )),
        _ => Err(refusal(
            "session_used",
            "This link was already used. Go back and start connecting your Zoom account again.",
            Some(&session),
        )),
    }
}

fn store_refusal(e: StoreError) -> Refusal {
    tracing::error!(error = %e, "reading a connect session failed");
    refusal(
        "internal_error",
        "zoomkeeper could not read its database; try again in a moment.",
        None,
    )
}

/// `GET /connect/{token}`: what the landing page needs.
pub async fn landing(keeper: &Keeper, token: &str) -> Result<Landing, Refusal> {
    let session = usable(keeper, token).await?;
    let project = keeper
        .store
        .project_by_id(&session.project_id)
        .await
        .map_err(store_refusal)?;
    let app = keeper
        .store
        .app_by_id(&session.app_id)
        .await
        .map_err(store_refusal)?;
    match (project, app) {
        (Some(project), Some(app)) => Ok(Landing {
            session,
            project,
            app,
        }),
        _ => Err(refusal(
            "session_not_found",
            "The app this link was made for no longer exists.",
            Some(&session),
        )),
    }
}

/// `POST /connect/{token}` (the button): a fresh `state` and PKCE verifier for the
/// session, and Zoom's authorize URL carrying them.
pub async fn authorize_url(
    keeper: &Keeper,
    token: &str,
    public_url: &str,
) -> Result<String, Refusal> {
    let landing = landing(keeper, token).await?;
    let session = &landing.session;
    let state = random_token();
    let verifier = PkceVerifier::generate();
    let sealed = keeper.vault.seal(
        Slot::connect_session_code_verifier(&session.id),
        verifier.secret().expose_secret().as_bytes(),
    );
    let begun = keeper
        .store
        .begin_connect_authorization(&session.id, &hash(&state), &sealed, keeper.clock.now())
        .await
        .map_err(store_refusal)?;
    if !begun {
        return Err(refusal(
            "session_used",
            "This link was just used or has expired. Go back and start connecting your Zoom account again.",
            Some(session),
        ));
    }
    let redirect_uri = callback_url(public_url);
    let challenge = verifier.challenge();
    Ok(keeper.zoom.client().authorize_url(&zoom::AuthorizeRequest {
        client_id: &landing.app.client_id,
        redirect_uri: &redirect_uri,
        state: state.expose_secret(),
        code_challenge: Some(&challenge),
    }))
}

/// What Zoom's redirect to `/connect/zoom/callback` carried.
pub struct ZoomReturn {
    pub state: Option<String>,
    pub code: Option<SecretString>,
    pub error: Option<String>,
}

/// `GET /connect/zoom/callback`: exchanges the code through the connection create
/// path; answers where to send the user (the session's `return_url` with the
/// connection or the error).
pub async fn complete(
    keeper: &Arc<Keeper>,
    public_url: &str,
    zoom_return: ZoomReturn,
) -> Result<String, Refusal> {
    let never_issued = || {
        refusal(
            "invalid_state",
            "This sign-in did not start here, or was replaced by a newer one. Go back and start connecting your Zoom account again.",
            None,
        )
    };
    let state = zoom_return
        .state
        .filter(|s| !s.is_empty() && s.len() <= 200)
        .ok_or_else(never_issued)?;
    let state_hash = hash(&SecretString::from(state));
    let session = keeper
        .store
        .connect_session_by_state(&state_hash)
        .await
        .map_err(store_refusal)?
        .ok_or_else(never_issued)?;
    let now = keeper.clock.now();
    match phase(&session, now) {
        "pending" => {}
        "expired" => {
            return Err(refusal(
                "session_expired",
                "The link expired before Zoom sent you back. Start connecting your Zoom account again.",
                Some(&session),
            ))
        }
        _ => {
            return Err(refusal(
                "session_used",
                "This sign-in was already completed. Start connecting your Zoom account again if you need to.",
                Some(&session),
            ))
        }
    }
    // Zoom said no (the user declined, or the app is not allowed for them).
    if let Some(error) = zoom_return.error {
        let error = if error == "access_denied" {
            "access_denied"
        } else {
            "zoom_error"
        };
        let description = if error == "access_denied" {
            "You declined the authorisation at Zoom, so no Zoom account was connected."
        } else {
            "Zoom did not authorise the app, so no Zoom account was connected."
        };
        finish(
            keeper,
            &session,
            &state_hash,
            ConnectSessionStatus::Pending,
            Err((error, description)),
        )
        .await?;
        return Err(refusal(error, description, Some(&session)));
    }
    let Some(code) = zoom_return.code.filter(|c| !c.expose_secret().is_empty()) else {
        return Err(refusal(
            "invalid_request",
            "Zoom sent you back without an authorisation code. Start connecting your Zoom account again.",
            Some(&session),
        ));
    };
    // One use: the session moves to `exchanging` before the code is spent.
    let claimed = keeper
        .store
        .move_connect_session(
            &session.id,
            ConnectSessionStatus::Pending,
            ConnectSessionStatus::Exchanging,
            &ConnectSessionOutcome {
                state_hash: Some(state_hash.clone()),
                ..ConnectSessionOutcome::default()
            },
            now,
        )
        .await
        .map_err(store_refusal)?;
    if !claimed {
        return Err(refusal(
            "session_used",
            "This sign-in was already completed. Start connecting your Zoom account again if you need to.",
            Some(&session),
        ));
    }
    let verifier = session.code_verifier.as_ref().and_then(|sealed| {
        keeper
            .vault
            .open(Slot::connect_session_code_verifier(&session.id), sealed)
            .ok()
            .and_then(|v| String::from_utf8(v.expose_secret().to_vec()).ok())
    });
    let new = NewConnection {
        authorization_code: code,
        redirect_uri: callback_url(public_url),
        app_id: Some(session.app_id.clone()),
        code_verifier: verifier.map(SecretString::from),
        is_local_recording_token_supported: session.is_local_recording_token_supported,
        is_onbehalf_token_supported: session.is_onbehalf_token_supported,
        metadata: session.metadata.clone(),
        deduplication_key: session.deduplication_key.clone(),
        announce_new: true,
        capabilities_from_scopes: false,
    };
    match connections::create(keeper, &session.project_id, new).await {
        Ok(connection) => {
            finish(
                keeper,
                &session,
                &state_hash,
                ConnectSessionStatus::Exchanging,
                Ok(&connection.id),
            )
            .await?;
            Ok(return_url(
                &session,
                &[("zoom_oauth_connection_id", &connection.id)],
            ))
        }
        Err(e) => {
            let (error, description) = describe(&e);
            finish(
                keeper,
                &session,
                &state_hash,
                ConnectSessionStatus::Exchanging,
                Err((error, &description)),
            )
            .await?;
            Err(refusal(error, description, Some(&session)))
        }
    }
}

/// The session's outcome, written once.
async fn finish(
    keeper: &Keeper,
    session: &ConnectSessionRow,
    state_hash: &[u8],
    from: ConnectSessionStatus,
    result: Result<&str, (&str, &str)>,
) -> Result<(), Refusal> {
    let (to, outcome) = match result {
        Ok(connection_id) => (
            ConnectSessionStatus::Completed,
            ConnectSessionOutcome {
                connection_id: Some(connection_id.to_owned()),
                ..ConnectSessionOutcome::default()
            },
        ),
        Err((error, description)) => (
            ConnectSessionStatus::Failed,
            ConnectSessionOutcome {
                error: Some(error.to_owned()),
                error_description: Some(description.to_owned()),
                ..ConnectSessionOutcome::default()
            },
        ),
    };
    let outcome = ConnectSessionOutcome {
        state_hash: Some(state_hash.to_vec()),
        ..outcome
    };
    keeper
        .store
        .move_connect_session(&session.id, from, to, &outcome, keeper.clock.now())
        .await
        .map_err(store_refusal)?;
    Ok(())
}

/// A failed create in the words the API uses, for the customer's `error`.
fn describe(e: &ConnectionError) -> (&'static str, String) {
    match e {
        ConnectionError::AuthorizationCodeRejected(_) => (
            "authorization_code_rejected",
            "Zoom refused the sign-in (the code was invalid or expired). Start connecting your Zoom account again.".to_owned(),
        ),
        ConnectionError::MissingScopes(missing) => (
            "missing_scopes",
            format!(
                "The Zoom app does not grant what is needed ({}). Its owner must add these scopes to the app in the Zoom App Marketplace.",
                missing.join(", ")
            ),
        ),
        ConnectionError::ZoomUserNotActive(status) => (
            "zoom_user_not_active",
            format!("Your Zoom user is not active (status {status}); activate it in Zoom, then try again."),
        ),
        ConnectionError::DeduplicationKeyTaken => (
            "deduplication_key_taken",
            "Another Zoom account is already connected for you here; ask the app that sent you to remove it first.".to_owned(),
        ),
        ConnectionError::Superseded => (
            "authorization_superseded",
            "A newer sign-in of your Zoom account replaced this one; the newer one is kept.".to_owned(),
        ),
        ConnectionError::Zoom(_) => (
            "zoom_unavailable",
            "Zoom could not be reached or failed; try again in a moment.".to_owned(),
        ),
        other => {
            tracing::error!(error = %other, "a hosted connect create failed");
            (
                "internal_error",
                "zoomkeeper could not finish connecting your Zoom account; try again in a moment.".to_owned(),
            )
        }
    }
}
