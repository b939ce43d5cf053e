//! `POST /api/v1/zoom_join_tokens` (DESIGN.md §4 "Tokens"): everything a bot needs
//! to join one meeting, in one call.
//!
//! Rules kept here: which meeting a link names (a `/my/{vanity}` link through the
//! connections' stored personal meeting URLs), which connection mints which token
//! (the local recording token with the host's credentials per the meeting index,
//! PMI rows included; onbehalf and ZAK with the named user's), and what a bot
//! operator is told when a token cannot be had: the token is null and a `problems`
//! row says exactly why. Only a request that cannot name a meeting (an unparseable
//! link, an unknown personal link, an unclear app) fails as a whole.
//!
//! The tokens are minted concurrently: a joining bot is waiting. With a
//! `zoom_tokens_url` the tokens come from the customer's server instead (a signed
//! POST, 5 s, no redirects, private addresses refused unless configured).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use zoom::{MeetingId, SdkRole, SdkSignature, ZoomError};

use crate::domain::meetings::is_meeting_number;
use crate::domain::tokens::{BrokeredCallError, TokenError, UserToken};
use crate::storage::{
    AppKind, AppRow, ConnectionFilter, ConnectionRow, ConnectionState, PageRequest, StoreError,
};
use crate::{
    core::ids::IdKind, core::outbound_url, core::signing, domain::apps, domain::grant,
    domain::webhooks, Keeper,
};

/// How long the customer's `zoom_tokens_url` has to answer.
pub const CALLBACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest callback answer read.
const MAX_CALLBACK_BODY: usize = 64 * 1024;
/// Longest token accepted from a callback.
const MAX_CALLBACK_TOKEN_CHARS: usize = 8 * 1024;

/// What a bot asks for.
pub struct JoinTokenRequest {
    pub meeting_url: String,
    pub app_id: Option<String>,
    /// Zoom user id of the connection to mint the onbehalf token with.
    pub onbehalf_user_id: Option<String>,
    /// Zoom user id of the connection to mint the ZAK with.
    pub zak_user_id: Option<String>,
    pub sdk_role: Option<SdkRole>,
    pub zoom_tokens_url: Option<String>,
    /// The connection to mint the local recording token with, instead of the
    /// meeting's host per the meeting index (Attendee's `zoom_oauth_connection_id`).
    pub recording_connection_id: Option<String>,
}

/// Why a token is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The response field (`app_privilege_token`, …), or `callback`.
    pub token: &'static str,
    /// Stable snake_case: `no_host_connection`, `no_connection`,
    /// `connection_disconnected`, `capability_not_enabled`, `zoom_error`,
    /// `callback_url_refused`, `callback_failed`, `internal_error`, …
    pub code: &'static str,
    /// A sentence the bot operator can act on; never holds a token.
    pub message: String,
    /// The connection the problem is about, when one was found.
    pub connection_id: Option<String>,
}

/// The answer. (No `Debug`: it holds tokens.)
#[derive(Default)]
pub struct JoinTokens {
    pub meeting_id: Option<String>,
    pub meeting_password: Option<String>,
    pub registrant_token: Option<String>,
    pub app_privilege_token: Option<SecretString>,
    pub onbehalf_token: Option<SecretString>,
    pub zak_token: Option<SecretString>,
    pub join_token: Option<SecretString>,
    pub sdk_signature: Option<SdkSignature>,
    pub problems: Vec<Problem>,
}

#[derive(Debug, thiserror::Error)]
pub enum JoinTokenError {
    /// The meeting link cannot be read; carries the parser's reason.
    #[error("{0}")]
    InvalidMeetingUrl(String),
    /// A `/my/{vanity}` link no connection's personal meeting URL matches.
    #[error("no connection's personal meeting URL is /my/{0}")]
    UnknownPersonalLink(String),
    /// `zoom_oauth_app_id` is missing or wrong; carries the sentence for the field.
    #[error("{0}")]
    App(String),
    /// `zoom_oauth_connection_id` is not a connection id; carries the sentence.
    #[error("{0}")]
    Connection(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The meeting a link names, resolved.
pub(crate) struct Meeting {
    pub(crate) number: String,
    password: Option<String>,
    registrant_token: Option<String>,
}

pub async fn join_tokens(
    keeper: &Arc<Keeper>,
    project_id: &str,
    request: JoinTokenRequest,
) -> Result<JoinTokens, JoinTokenError> {
    let link = zoom::meeting_url::parse(&request.meeting_url)
        .map_err(|e| JoinTokenError::InvalidMeetingUrl(e.to_string()))?;
    if let Some(id) = &request.recording_connection_id {
        if !IdKind::Connection.matches(id) {
            return Err(JoinTokenError::Connection(
                "Must be a connection id (zoc_ and 16 letters or digits), as GET /api/v1/zoom_oauth_connections lists them.".to_owned(),
            ));
        }
    }
    let callback = request
        .zoom_tokens_url
        .as_deref()
        .filter(|u| !u.trim().is_empty());
    // The app is needed for anything minted here; a callback alone does not need it.
    let needs_app = callback.is_none() || request.sdk_role.is_some();
    let app = if needs_app {
        Some(resolve_app(keeper, project_id, request.app_id.as_deref()).await?)
    } else {
        match request.app_id.as_deref() {
            Some(id) => Some(resolve_app(keeper, project_id, Some(id)).await?),
            None => None,
        }
    };
    let meeting = resolve_meeting(keeper, project_id, app.as_ref(), link).await?;
    let mut out = JoinTokens {
        meeting_id: Some(meeting.number.clone()),
        meeting_password: meeting.password.clone(),
        registrant_token: meeting.registrant_token.clone(),
        ..JoinTokens::default()
    };

    if let (Some(role), Some(app)) = (request.sdk_role, app.as_ref()) {
        match sdk_signature(keeper, app, &meeting.number, role) {
            Ok(signature) => out.sdk_signature = Some(signature),
            Err(problem) => out.problems.push(problem),
        }
    }

    if let Some(url) = callback {
        fetch_from_callback(keeper, project_id, &request.meeting_url, url, &mut out).await;
        return Ok(out);
    }
    let Some(app) = app else {
        return Err(JoinTokenError::Internal(
            "an app is resolved whenever tokens are minted here".to_owned(),
        ));
    };

    let zak_user = match request.zak_user_id {
        Some(user) => Some(user),
        None => keeper.store.project_default_zak_user(project_id).await?,
    };
    let minted = mint(
        keeper,
        &MintPlan {
            project_id,
            app: &app,
            meeting: &meeting.number,
            app_privilege: true,
            onbehalf: match request.onbehalf_user_id.as_deref() {
                Some(users) => OnBehalfOf::Users(user_list(users)),
                None => OnBehalfOf::Nobody,
            },
            zak_user: zak_user.as_deref(),
            recording_connection: request.recording_connection_id.as_deref(),
        },
    )
    .await;
    out.app_privilege_token = minted.app_privilege_token;
    out.onbehalf_token = minted.onbehalf_token;
    out.zak_token = minted.zak_token;
    out.problems.extend(minted.problems);
    keeper.metrics.record_token_request(
        "zoom_join_tokens",
        if out.problems.is_empty() {
            "minted"
        } else {
            "partial"
        },
    );
    Ok(out)
}

/// Zoom user ids from a comma-separated list (as newer Attendee accepts several
/// onbehalf tokens), trimmed, without empties or repeats, in order.
pub fn user_list(users: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for user in users.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        if !out.iter().any(|u| u == user) {
            out.push(user.to_owned());
        }
    }
    out
}

/// Whether `user` has the shape of a Zoom user id: letters, digits, `-` and `_`,
/// at most 64 characters.
pub fn is_user_id(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= 64
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whose onbehalf token to mint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnBehalfOf {
    Nobody,
    /// Each of these Zoom users (their connections in the app), in order.
    Users(Vec<String>),
    /// The meeting's host, per the meeting index, when their connection has the
    /// onbehalf capability.
    Host,
}

/// What to mint for one meeting, and with whose credentials.
pub struct MintPlan<'a> {
    pub project_id: &'a str,
    pub app: &'a AppRow,
    /// The meeting number.
    pub meeting: &'a str,
    /// The local recording token, with the host's credentials.
    pub app_privilege: bool,
    pub onbehalf: OnBehalfOf,
    /// The Zoom user whose connection mints the ZAK; none when `None`.
    pub zak_user: Option<&'a str>,
    /// The connection that mints the local recording token, when the caller names
    /// one; otherwise the host's, from the meeting index.
    pub recording_connection: Option<&'a str>,
}

/// What [`mint`] got. (No `Debug`: it holds tokens.)
#[derive(Default)]
pub struct Minted {
    pub app_privilege_token: Option<SecretString>,
    /// One token per user that got one, comma-separated, in the plan's order.
    pub onbehalf_token: Option<SecretString>,
    pub zak_token: Option<SecretString>,
    pub problems: Vec<Problem>,
    /// `(connection id, token name)` for every token minted.
    pub minted_by: Vec<(String, &'static str)>,
}

/// Mints the tokens of `plan` concurrently (a joining bot is waiting). A token that
/// cannot be had is `None` with a [`Problem`] saying why.
pub async fn mint(keeper: &Arc<Keeper>, plan: &MintPlan<'_>) -> Minted {
    const ONBEHALF: &str = "onbehalf_token";
    let onbehalf = async {
        let users = match &plan.onbehalf {
            OnBehalfOf::Nobody => return Vec::new(),
            OnBehalfOf::Users(users) => users.clone(),
            OnBehalfOf::Host => match host_connection(keeper, plan, ONBEHALF).await {
                // The host's own token. A meeting of an account-level app is
                // indexed to an account connection (an admin's grant); the index
                // names its host, whose token that connection mints ([`user_token`]).
                Ok((host, host_user)) if host.is_onbehalf_token_supported => {
                    match host_user {
                        Some(user) if plan.app.kind == AppKind::AccountLevel => vec![user],
                        _ => vec![host.user_id],
                    }
                }
                Ok((host, _)) => {
                    return vec![Err(problem_of(
                        &host,
                        ONBEHALF,
                        "capability_not_enabled",
                        format!("No Zoom user was named for the onbehalf token, and the meeting's host (connection {}) does not have the onbehalf capability. Name the user, or turn the capability on with PATCH (is_onbehalf_token_supported: true).", host.id),
                    ))]
                }
                Err(problem) => return vec![Err(problem)],
            },
        };
        let meeting_id = Some(plan.meeting.to_owned());
        futures::future::join_all(users.iter().map(|user| {
            user_token(
                keeper,
                plan.app,
                user,
                UserToken::OnBehalf {
                    meeting_id: meeting_id.clone(),
                },
            )
        }))
        .await
    };
    let (app_privilege, onbehalf, zak) = tokio::join!(
        async {
            if plan.app_privilege {
                Some(app_privilege_token(keeper, plan).await)
            } else {
                None
            }
        },
        onbehalf,
        async {
            match plan.zak_user {
                Some(user) => Some(user_token(keeper, plan.app, user, UserToken::Zak).await),
                None => None,
            }
        },
    );
    let mut out = Minted::default();
    let mut take =
        |result: Result<(SecretString, String), Problem>, name: &'static str| match result {
            Ok((token, connection_id)) => {
                out.minted_by.push((connection_id, name));
                Some(token)
            }
            Err(problem) => {
                out.problems.push(problem);
                None
            }
        };
    out.app_privilege_token = app_privilege.and_then(|r| take(r, "app_privilege_token"));
    out.zak_token = zak.and_then(|r| take(r, "zak_token"));
    let onbehalf: Vec<SecretString> = onbehalf
        .into_iter()
        .filter_map(|r| take(r, ONBEHALF))
        .collect();
    if !onbehalf.is_empty() {
        // Attendee splits on "," without trimming: no spaces.
        let joined = onbehalf
            .iter()
            .map(|t| t.expose_secret())
            .collect::<Vec<_>>()
            .join(",");
        out.onbehalf_token = Some(SecretString::from(joined));
    }
    out
}

/// The named app, or the project's only one.
pub async fn resolve_app(
    keeper: &Keeper,
    project_id: &str,
    app_id: Option<&str>,
) -> Result<AppRow, JoinTokenError> {
    if let Some(id) = app_id.map(str::trim) {
        return match apps::get(&*keeper.store, project_id, id).await {
            Ok(app) => Ok(app),
            Err(apps::AppError::Store(e)) => Err(e.into()),
            Err(_) => Err(JoinTokenError::App(
                "No Zoom OAuth app with this id exists in your project.".to_owned(),
            )),
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
    match (page.items.len(), page.has_more) {
        (1, false) => page
            .items
            .into_iter()
            .next()
            .ok_or_else(|| JoinTokenError::Internal("a page of one app had no app".to_owned())),
        (0, _) => Err(JoinTokenError::App(
            "This project has no Zoom OAuth app yet. Create one with POST /api/v1/zoom_oauth_apps first.".to_owned(),
        )),
        _ => Err(JoinTokenError::App(
            "This project has several Zoom OAuth apps. Say which one with zoom_oauth_app_id.".to_owned(),
        )),
    }
}

/// The meeting number of a link; a `/my/{vanity}` link is the PMI of the connection
/// whose personal meeting URL is that link (its passcode too, when the link has none).
pub(crate) async fn resolve_meeting(
    keeper: &Keeper,
    project_id: &str,
    app: Option<&AppRow>,
    link: zoom::MeetingLink,
) -> Result<Meeting, JoinTokenError> {
    let vanity = match link.meeting_id {
        MeetingId::Number(number) => {
            return Ok(Meeting {
                number,
                password: link.password,
                registrant_token: link.registrant_token,
            })
        }
        MeetingId::Vanity(vanity) => vanity,
    };
    let candidates = keeper
        .store
        .connections_by_personal_link(project_id, app.map(|a| a.id.as_str()), &vanity)
        .await?;
    let mut matches: Vec<(ConnectionRow, zoom::MeetingLink)> = candidates
        .into_iter()
        .filter_map(|c| {
            let stored = zoom::meeting_url::parse(c.personal_meeting_url.as_deref()?).ok()?;
            let same = matches!(&stored.meeting_id, MeetingId::Vanity(v) if v.eq_ignore_ascii_case(&vanity));
            let pmi_ok = c.pmi.as_deref().is_some_and(is_meeting_number);
            (same && pmi_ok).then_some((c, stored))
        })
        .collect();
    // Zoom vanity names are case-insensitive. A connected one first; the store gives
    // connected ones first, then newest first.
    matches.sort_by_key(|(c, _)| c.state != ConnectionState::Connected);
    let Some((connection, stored)) = matches.into_iter().next() else {
        return Err(JoinTokenError::UnknownPersonalLink(vanity));
    };
    Ok(Meeting {
        number: connection.pmi.unwrap_or_default(),
        password: link.password.or(stored.password),
        registrant_token: link.registrant_token,
    })
}

fn problem(token: &'static str, code: &'static str, message: impl Into<String>) -> Problem {
    Problem {
        token,
        code,
        message: message.into(),
        connection_id: None,
    }
}

/// [`problem`] about connection `connection`.
fn problem_of(
    connection: &ConnectionRow,
    token: &'static str,
    code: &'static str,
    message: impl Into<String>,
) -> Problem {
    Problem {
        connection_id: Some(connection.id.clone()),
        ..problem(token, code, message)
    }
}

/// The local recording token, minted with the credentials of the connection that
/// hosts the meeting per the index.
async fn app_privilege_token(
    keeper: &Arc<Keeper>,
    plan: &MintPlan<'_>,
) -> Result<(SecretString, String), Problem> {
    const TOKEN: &str = "app_privilege_token";
    let meeting = plan.meeting;
    let named = plan.recording_connection.is_some();
    let connection = match plan.recording_connection {
        Some(id) => named_connection(keeper, plan, id, TOKEN).await?,
        None => host_connection(keeper, plan, TOKEN).await?.0,
    };
    if connection.state == ConnectionState::Disconnected {
        return Err(disconnected_problem(TOKEN, &connection));
    }
    if !connection.is_local_recording_token_supported {
        return Err(problem_of(
            &connection,
            TOKEN,
            "capability_not_enabled",
            format!("Connection {} hosts meeting {meeting} but does not have the local recording capability. Turn it on with PATCH (is_local_recording_token_supported: true).", connection.id),
        ));
    }
    let result =
        crate::domain::tokens::with_access_token(keeper, &connection, |access| async move {
            keeper
                .zoom
                .local_recording_token(&access, meeting, true)
                .await
        })
        .await;
    keeper.metrics.record_token_request(
        "local_recording_token",
        match &result {
            Ok(_) => "minted",
            Err(BrokeredCallError::Token(e)) => e.outcome(),
            Err(BrokeredCallError::Zoom(e)) => e.class(),
        },
    );
    match result {
        Ok(token) => Ok((token.token, connection.id)),
        Err(BrokeredCallError::Zoom(e)) if e.is_local_recording_disabled() => Err(problem_of(
            &connection,
            TOKEN,
            "local_recording_disabled",
            format!("Zoom refuses the local recording token for meeting {meeting}: local recording is turned off for its host (connection {}, Zoom code 3000 \"Not allowed to start local recording\"). The host, or an admin of their Zoom account, must turn on Settings → Recording → Local recording in the Zoom web portal (and allow participants to record locally); then ask again.", connection.id),
        )),
        // Zoom mints it only with its host's (or an admin's) credentials.
        Err(BrokeredCallError::Zoom(
            e @ (ZoomError::Forbidden { .. } | ZoomError::NotFound { .. }),
        )) if named => Err(problem_of(
            &connection,
            TOKEN,
            "not_meeting_host",
            format!("Zoom refuses the local recording token for meeting {meeting} with connection {}, the one named in zoom_oauth_connection_id: it does not host the meeting ({}). Name the host's connection, or leave zoom_oauth_connection_id out to use the host's connection from the meeting index.", connection.id, e.description()),
        )),
        Err(BrokeredCallError::Zoom(e)) => Err(zoom_problem(TOKEN, &connection, &e)),
        Err(BrokeredCallError::Token(e)) => Err(token_problem(TOKEN, &connection, e)),
    }
}

/// The connection a bot named (`zoom_oauth_connection_id`): one of the project's,
/// of the plan's app.
async fn named_connection(
    keeper: &Keeper,
    plan: &MintPlan<'_>,
    id: &str,
    token: &'static str,
) -> Result<ConnectionRow, Problem> {
    let found = keeper
        .store
        .get_connection(plan.project_id, id)
        .await
        .map_err(|e| store_problem(token, e))?;
    match found {
        Some(c) if c.app_id == plan.app.id => Ok(c),
        Some(c) => Err(problem_of(
            &c,
            token,
            "no_connection",
            format!("Connection {id} (zoom_oauth_connection_id) belongs to app {}, not to app {} that this request uses. Name a connection of that app, or send its zoom_oauth_app_id.", c.app_id, plan.app.id),
        )),
        None => Err(problem(
            token,
            "no_connection",
            format!("No connection {id} (zoom_oauth_connection_id) exists in your project."),
        )),
    }
}

/// The connection of the app that hosts the plan's meeting, per the meeting index,
/// and the Zoom user the index names as the host (when it does).
async fn host_connection(
    keeper: &Keeper,
    plan: &MintPlan<'_>,
    token: &'static str,
) -> Result<(ConnectionRow, Option<String>), Problem> {
    let meeting = plan.meeting;
    let hosts = keeper
        .store
        .meeting_hosts(plan.project_id, Some(&plan.app.id), meeting)
        .await
        .map_err(|e| store_problem(token, e))?;
    let Some(host) = hosts.into_iter().next() else {
        return Err(problem(
            token,
            "no_host_connection",
            format!("No connection hosts meeting {meeting}; the {} must be minted with the host's credentials. Connect the meeting's host (or wait for their meeting sync), or check that the app's Zoom webhook reaches zoomkeeper.", match token {
                "app_privilege_token" => "local recording token",
                _ => "onbehalf token (no user was named)",
            }),
        ));
    };
    let connection = keeper
        .store
        .get_connection(plan.project_id, &host.connection_id)
        .await
        .map_err(|e| store_problem(token, e))?
        .ok_or_else(|| {
            problem(
                token,
                "no_host_connection",
                format!("No connection hosts meeting {meeting}; its host's connection was just deleted."),
            )
        })?;
    Ok((connection, host.host_user_id))
}

/// An onbehalf token or a ZAK, minted with the credentials of the app's connection
/// for Zoom user `user_id`; with that connection's id.
async fn user_token(
    keeper: &Arc<Keeper>,
    app: &AppRow,
    user_id: &str,
    which: UserToken,
) -> Result<(SecretString, String), Problem> {
    let token: &'static str = match which {
        UserToken::Zak => "zak_token",
        UserToken::OnBehalf { .. } => "onbehalf_token",
    };
    if !is_user_id(user_id.trim()) {
        return Err(problem(
            token,
            "invalid_user_id",
            "A Zoom user id is letters, digits, '-' and '_' (the id of GET /v2/users/me), at most 64 characters.",
        ));
    }
    let own = keeper
        .store
        .connection_by_user(&app.id, user_id.trim())
        .await
        .map_err(|e| store_problem(token, e))?
        .filter(|c| c.project_id == app.project_id);
    // The user's own connection wins; an account-level app's account connections
    // (an admin's grant) serve every other user of their account.
    let own_usable = own
        .as_ref()
        .is_some_and(|c| c.state == ConnectionState::Connected);
    if app.kind == AppKind::AccountLevel && !own_usable {
        if let Some(minted) = account_user_token(keeper, app, user_id.trim(), &which).await? {
            return Ok(minted);
        }
    }
    let connection = own.ok_or_else(|| {
        problem(
            token,
            "no_connection",
            format!(
                "No connection of app {} has the Zoom user id {:?}{}; connect that user first.",
                app.id,
                user_id.chars().take(64).collect::<String>(),
                if app.kind == AppKind::AccountLevel {
                    ", and none of its account connections has that user in its account"
                } else {
                    ""
                }
            ),
        )
    })?;
    if connection.state == ConnectionState::Disconnected {
        return Err(disconnected_problem(token, &connection));
    }
    crate::domain::tokens::user_token(keeper, &connection.project_id, &connection.id, which)
        .await
        .map(|minted| (minted, connection.id.clone()))
        .map_err(|e| token_problem(token, &connection, e))
}

/// How many of an account-level app's account connections a token for another
/// user is tried with (one per Zoom account; a customer has a handful).
const ACCOUNT_CONNECTIONS_TRIED: u32 = 20;

/// A token of `user_id` minted with one of `app`'s connected account connections,
/// one per Zoom account, through `GET /users/{userId}/token`: the first account
/// Zoom finds the user in. `None` when no account has them.
async fn account_user_token(
    keeper: &Arc<Keeper>,
    app: &AppRow,
    user_id: &str,
    which: &UserToken,
) -> Result<Option<(SecretString, String)>, Problem> {
    let token: &'static str = match which {
        UserToken::Zak => "zak_token",
        UserToken::OnBehalf { .. } => "onbehalf_token",
    };
    let filter = ConnectionFilter {
        app_id: Some(app.id.clone()),
        state: Some(ConnectionState::Connected),
        ..ConnectionFilter::default()
    };
    let page = keeper
        .store
        .list_connections(
            &app.project_id,
            &filter,
            &PageRequest {
                cursor: None,
                limit: ACCOUNT_CONNECTIONS_TRIED,
            },
        )
        .await
        .map_err(|e| store_problem(token, e))?;
    let mut accounts = std::collections::HashSet::new();
    for connection in page.items {
        if connection.user_id == user_id || !accounts.insert(connection.account_id.clone()) {
            continue;
        }
        match crate::domain::tokens::user_token_of(
            keeper,
            &connection.project_id,
            &connection.id,
            user_id,
            which.clone(),
        )
        .await
        {
            Ok(minted) => return Ok(Some((minted, connection.id.clone()))),
            Err(TokenError::UserNotInAccount) => {}
            Err(e) => return Err(token_problem(token, &connection, e)),
        }
    }
    Ok(None)
}

fn disconnected_problem(token: &'static str, connection: &ConnectionRow) -> Problem {
    let why = connection
        .connection_failure_data
        .as_ref()
        .map(|f| format!(" ({})", f.error))
        .unwrap_or_default();
    problem_of(
        connection,
        token,
        "connection_disconnected",
        format!(
            "Connection {} is disconnected{why}; the user must authorise the app again.",
            connection.id
        ),
    )
}

fn token_problem(token: &'static str, connection: &ConnectionRow, e: TokenError) -> Problem {
    let about = match e {
        TokenError::Disconnected(failure) => {
            let mut c = connection.clone();
            c.connection_failure_data = failure.or(c.connection_failure_data);
            disconnected_problem(token, &c)
        }
        TokenError::CapabilityNotEnabled(capability) => problem(
            token,
            "capability_not_enabled",
            format!("Connection {} does not have the {capability} capability. Turn it on with PATCH (is_{capability}_token_supported: true).", connection.id),
        ),
        TokenError::RateLimited { retry_after } => problem(
            token,
            "zoom_error",
            format!("Zoom's rate limit was reached (class rate_limited) for connection {}; retry in {} s.", connection.id, retry_after.as_secs().max(1)),
        ),
        TokenError::ZoomUnavailable(reason) => problem(
            token,
            "zoom_error",
            format!("Zoom could not be reached or failed (class unavailable) for connection {}: {reason}", connection.id),
        ),
        TokenError::ZoomRefused(reason) => problem(
            token,
            "zoom_error",
            format!("Zoom refused the token for connection {}: {reason}", connection.id),
        ),
        TokenError::CallbackFailed(reason) => problem(
            token,
            "callback_failed",
            format!("Connection {}: {reason}", connection.id),
        ),
        TokenError::Busy | TokenError::LostFence => problem(
            token,
            "busy",
            format!("Connection {}'s access token is being refreshed by another instance; retry shortly.", connection.id),
        ),
        TokenError::UserNotInAccount => problem(
            token,
            "no_connection",
            format!(
                "The Zoom user is not a user of the account of connection {}.",
                connection.id
            ),
        ),
        TokenError::InvalidMeetingId => problem(
            token,
            "invalid_meeting_id",
            "The meeting number is not 9 to 11 digits.",
        ),
        TokenError::NotFound => problem(
            token,
            "no_connection",
            format!("Connection {} was just deleted.", connection.id),
        ),
        TokenError::Internal(context) => {
            tracing::error!(connection_id = %connection.id, context = %context, "minting a join token failed");
            problem(token, "internal_error", "An internal error stopped this token; it is logged.")
        }
    };
    Problem {
        connection_id: Some(connection.id.clone()),
        ..about
    }
}

fn zoom_problem(token: &'static str, connection: &ConnectionRow, e: &ZoomError) -> Problem {
    problem_of(
        connection,
        token,
        "zoom_error",
        format!(
            "Zoom refused to mint the token with connection {} (class {}): {}",
            connection.id,
            e.class(),
            e.description()
        ),
    )
}

fn store_problem(token: &'static str, e: StoreError) -> Problem {
    tracing::error!(error = %e, token, "reading the database for a join token failed");
    problem(
        token,
        "internal_error",
        "The database could not be read; retry shortly.",
    )
}

fn sdk_signature(
    keeper: &Keeper,
    app: &AppRow,
    meeting: &str,
    role: SdkRole,
) -> Result<SdkSignature, Problem> {
    const TOKEN: &str = "sdk_signature";
    let creds = grant::app_credentials(keeper, app).map_err(|e| {
        tracing::error!(app_id = %app.id, error = %e, "an app's client secret does not open");
        problem(
            TOKEN,
            "internal_error",
            "The app's client secret could not be opened; it is logged.",
        )
    })?;
    zoom::sdk_signature::sign(
        &creds.client_id,
        &creds.client_secret,
        meeting,
        role,
        zoom::sdk_signature::DEFAULT_LIFETIME,
        keeper.clock.now().timestamp(),
    )
    .map_err(|e| {
        problem(
            TOKEN,
            "sdk_signature_failed",
            format!("The SDK signature could not be made: {e}."),
        )
    })
}

/// Why a callback gave no answer: its URL was refused, or asking failed.
enum CallbackError {
    Refused(String),
    Failed(String),
}
use CallbackError::{Failed, Refused};

/// Asks the customer's `zoom_tokens_url` for the tokens; failures become one
/// `callback` problem.
async fn fetch_from_callback(
    keeper: &Keeper,
    project_id: &str,
    meeting_url: &str,
    url: &str,
    out: &mut JoinTokens,
) {
    const TOKEN: &str = "callback";
    let secrets = match webhooks::signing_secrets(&*keeper.store, &keeper.vault, project_id).await {
        Ok(secrets) => secrets,
        Err(e) => {
            tracing::error!(project_id, error = %e, "the project's signing secrets could not be read for a callback");
            out.problems.push(problem(
                TOKEN,
                "internal_error",
                "The project's signing secret could not be read; retry shortly.",
            ));
            return;
        }
    };
    let allow_private = keeper.config.allow_private_callback_urls;
    let payload = json!({"callback_type": "zoom_tokens", "meeting_url": meeting_url.trim()});
    // The URL check (its DNS lookup included) and the request share one time limit.
    let answer = async {
        let checked = outbound_url::check(url, allow_private).await.map_err(|e| {
            Refused(format!(
                "callback_settings.zoom_tokens_url is refused: {e}."
            ))
        })?;
        if checked.url.scheme() != "https" && !allow_private {
            return Err(Refused(
                "callback_settings.zoom_tokens_url must be an https:// URL (http:// is accepted only when allow_private_callback_urls is on).".to_owned(),
            ));
        }
        let client = checked
            .client(CALLBACK_TIMEOUT)
            .map_err(|_| Failed("the HTTP client could not be built".to_owned()))?;
        // Signed like an outgoing webhook: same function, same headers.
        let signed = signing::sign(
            secrets.current.expose_secret(),
            secrets.previous.as_ref().map(|p| p.expose_secret()),
            &uuid::Uuid::new_v4().to_string(),
            keeper.clock.now().timestamp(),
            &payload,
        );
        let response = signed
            .post(&client, checked.url.clone())
            .send()
            .await
            .map_err(|e| Failed(describe_send_error(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(Failed(format!("it answered HTTP {}", status.as_u16())));
        }
        let bytes = read_limited(response).await.map_err(Failed)?;
        serde_json::from_slice::<Value>(&bytes)
            .map_err(|_| Failed("its answer is not JSON".to_owned()))
    };
    let value = match tokio::time::timeout(CALLBACK_TIMEOUT, answer).await {
        Ok(Ok(value)) => value,
        Ok(Err(Refused(message))) => {
            out.problems
                .push(problem(TOKEN, "callback_url_refused", message));
            return;
        }
        Ok(Err(Failed(why))) => {
            out.problems.push(problem(
                TOKEN,
                "callback_failed",
                format!("The zoom_tokens_url callback failed: {why}."),
            ));
            return;
        }
        Err(_) => {
            out.problems.push(problem(
                TOKEN,
                "callback_failed",
                "The zoom_tokens_url callback did not answer within 5 s.",
            ));
            return;
        }
    };
    let Some(object) = value.as_object() else {
        out.problems.push(problem(
            TOKEN,
            "callback_failed",
            "The zoom_tokens_url callback must answer a JSON object with any of zak_token, join_token, app_privilege_token, onbehalf_token.",
        ));
        return;
    };
    let mut take = |field: &'static str| -> Option<SecretString> {
        match object.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_CALLBACK_TOKEN_CHARS => {
                Some(SecretString::from(s.clone()))
            }
            Some(_) => {
                out.problems.push(problem(
                    field,
                    "callback_failed",
                    format!("The zoom_tokens_url callback's {field} must be a non-empty string of at most {MAX_CALLBACK_TOKEN_CHARS} characters."),
                ));
                None
            }
        }
    };
    let zak = take("zak_token");
    let join = take("join_token");
    let app_privilege = take("app_privilege_token");
    let onbehalf = take("onbehalf_token");
    out.zak_token = zak;
    out.join_token = join;
    out.app_privilege_token = app_privilege;
    out.onbehalf_token = onbehalf;
}

/// A send error in words, without the URL (it may carry the customer's secret).
fn describe_send_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "it did not answer within 5 s".to_owned()
    } else if e.is_connect() {
        "it could not be reached".to_owned()
    } else {
        "the request failed".to_owned()
    }
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| "its answer could not be read".to_owned())?
    {
        if body.len() + chunk.len() > MAX_CALLBACK_BODY {
            return Err(format!(
                "its answer is larger than {} KiB",
                MAX_CALLBACK_BODY / 1024
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Timestamps in answers: RFC 3339, microseconds, `Z`.
pub fn unix_to_datetime(secs: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(secs, 0)
}
