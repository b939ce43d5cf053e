//! Customer-managed connections (Recall's "customer-managed OAuth", DESIGN.md §14):
//! a connection whose Zoom access tokens come from the customer's own server, which
//! holds the user's grant. zoomkeeper holds no refresh token for it, never refreshes
//! or revokes anything at Zoom for it, and asks the customer's
//! `access_token_callback_url` whenever it needs a token.
//!
//! The rules kept here, and only here:
//! - the URL: at most [`MAX_CALLBACK_URL_CHARS`] characters, and the rule of every
//!   URL a customer gives us to call ([`crate::domain::webhooks::checked_url`]:
//!   http(s), no private addresses unless `allow_private_callback_urls`); the request
//!   goes only to the addresses checked, with no redirects;
//! - the call: `GET`, answered within [`CALLBACK_TIMEOUT`], 2xx, a plain-text body of
//!   at most [`MAX_CALLBACK_BODY`] bytes holding one token;
//! - the token's expiry: a JWT's `exp` (Zoom's access tokens are JWTs), which must be
//!   at least [`crate::domain::tokens::MIN_VALIDITY`] away; a token that is not a JWT
//!   counts as valid for exactly that long (the customer's promise), so it is never
//!   cached beyond it;
//! - one connection per app and Zoom user: a second one is refused
//!   ([`ConnectionError::UserAlreadyConnected`]), unlike the authorization-code
//!   create's upsert.
//!
//! The URL is a secret (customers put theirs in its query string): it is sealed at
//! rest, and no error, log line or answer shows more of it than its scheme and host.
//! The broker ([`crate::domain::tokens`]) fetches through [`fetch`] under the
//! connection's lease and single flight.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use zoom::ZoomError;

use crate::core::ids::IdKind;
use crate::core::vault::Slot;
use crate::domain::connections::{
    check_metadata, internal, invalid, resolve_app, ConnectionError, Problems,
};
use crate::domain::{tokens::MIN_VALIDITY, webhooks};
use crate::storage::{AppKind, ConnectionRow, ConnectionState, NewConnectionEvent, StoreError};
use crate::Keeper;

/// Longest `access_token_callback_url` (Recall's limit).
pub const MAX_CALLBACK_URL_CHARS: usize = 200;
/// The callback must have answered within this long (URL check included).
pub const CALLBACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read from a callback.
pub const MAX_CALLBACK_BODY: usize = 8 * 1024;
/// The field the URL's problems are reported on.
pub const URL_FIELD: &str = "access_token_callback_url";

/// A customer-managed connection to create. (No `Debug`: the URL is a secret.)
pub struct NewCallbackConnection {
    /// May be left out when the project has exactly one app.
    pub app_id: Option<String>,
    /// The `access_token_callback_url`.
    pub url: String,
    /// `Some(Value::Null)` counts as absent.
    pub metadata: Option<Value>,
    pub is_local_recording_token_supported: bool,
    pub is_onbehalf_token_supported: bool,
}

/// Where a customer-managed connection's callback URL is sealed.
pub fn url_slot(connection_id: &str) -> Slot<'_> {
    Slot::connection_access_token_callback_url(connection_id)
}

/// A token a callback answered, with the expiry it is trusted until.
pub struct CallbackToken {
    pub token: SecretString,
    pub expires_at: DateTime<Utc>,
}

/// Why a callback gave no usable token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The URL itself is refused; the sentence is about the URL.
    UrlRefused(String),
    /// Asking failed or the answer is unusable; `why` completes "…: {why}."
    Failed(String),
}

impl FetchError {
    /// The whole sentence a customer reads (no URL, no token).
    pub fn sentence(&self) -> String {
        match self {
            FetchError::UrlRefused(problem) => {
                format!("The access_token_callback_url is refused: {problem}")
            }
            FetchError::Failed(why) => failure_sentence(why),
        }
    }
}

/// "The access_token_callback_url did not return a usable Zoom access token: {why}."
pub fn failure_sentence(why: &str) -> String {
    format!("The access_token_callback_url did not return a usable Zoom access token: {why}.")
}

/// Checks a callback URL as a create does (length, then the outgoing-URL rule); the
/// problem as a sentence about the field.
async fn check_url(
    url: &str,
    allow_private: bool,
) -> Result<crate::core::outbound_url::CheckedUrl, String> {
    let url = url.trim();
    if url.is_empty() {
        return Err("Must not be empty.".to_owned());
    }
    let chars = url.chars().count();
    if chars > MAX_CALLBACK_URL_CHARS {
        return Err(format!(
            "Must be at most {MAX_CALLBACK_URL_CHARS} characters (it is {chars})."
        ));
    }
    webhooks::checked_url(url, allow_private).await
}

/// `scheme://host` of `url`, the most of it a log line shows.
fn shown(url: &url::Url) -> String {
    format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""))
}

/// Asks `url` for a Zoom access token: checks the URL (again: DNS may have changed),
/// `GET`s it pinned to the checked addresses, and checks the answer and the token's
/// expiry against `keeper`'s clock.
pub async fn fetch(keeper: &Keeper, url: &str) -> Result<CallbackToken, FetchError> {
    let allow_private = keeper.config.allow_private_callback_urls;
    let answer = async {
        let checked = check_url(url, allow_private)
            .await
            .map_err(FetchError::UrlRefused)?;
        let host = shown(&checked.url);
        let result = ask(&checked).await;
        if let Err(FetchError::Failed(why)) = &result {
            tracing::warn!(callback = %host, reason = %why, "an access_token_callback_url gave no usable token");
        }
        result
    };
    let body = match tokio::time::timeout(CALLBACK_TIMEOUT, answer).await {
        Ok(body) => body?,
        Err(_) => return Err(FetchError::Failed(timed_out())),
    };
    let token = one_token(&body).map_err(FetchError::Failed)?;
    let expires_at =
        expiry(token.expose_secret(), keeper.clock.now()).map_err(FetchError::Failed)?;
    Ok(CallbackToken { token, expires_at })
}

fn timed_out() -> String {
    format!("it did not answer within {} s", CALLBACK_TIMEOUT.as_secs())
}

/// The `GET` itself; the body read whole, within the size limit.
async fn ask(checked: &crate::core::outbound_url::CheckedUrl) -> Result<Vec<u8>, FetchError> {
    let client = checked
        .client(CALLBACK_TIMEOUT)
        .map_err(|_| FetchError::Failed("the HTTP client could not be built".to_owned()))?;
    let mut response = client
        .get(checked.url.clone())
        .header(reqwest::header::ACCEPT, "text/plain")
        .send()
        .await
        // reqwest's own message names the URL: only its kind is told.
        .map_err(|e| {
            FetchError::Failed(if e.is_timeout() {
                timed_out()
            } else if e.is_connect() {
                "it could not be reached".to_owned()
            } else {
                "the request failed".to_owned()
            })
        })?;
    let status = response.status();
    if status.is_redirection() {
        return Err(FetchError::Failed(format!(
            "it answered HTTP {} (redirects are not followed; give the final URL)",
            status.as_u16()
        )));
    }
    if !status.is_success() {
        return Err(FetchError::Failed(format!(
            "it answered HTTP {}",
            status.as_u16()
        )));
    }
    let mut body = Vec::new();
    loop {
        let chunk = response.chunk().await.map_err(|e| {
            FetchError::Failed(if e.is_timeout() {
                timed_out()
            } else {
                "its answer could not be read".to_owned()
            })
        })?;
        let Some(chunk) = chunk else {
            return Ok(body);
        };
        if body.len() + chunk.len() > MAX_CALLBACK_BODY {
            return Err(FetchError::Failed(format!(
                "its answer is longer than {} KiB; it must be the access token alone, as plain text",
                MAX_CALLBACK_BODY / 1024
            )));
        }
        body.extend_from_slice(&chunk);
    }
}

/// The one token a callback's body holds.
fn one_token(body: &[u8]) -> Result<SecretString, String> {
    let text = std::str::from_utf8(body)
        .map_err(|_| "its answer is not UTF-8 text; it must be the access token as plain text")?
        .trim();
    if text.is_empty() {
        return Err("its answer was empty; it must be the access token as plain text".to_owned());
    }
    if text.starts_with('{') || text.starts_with('[') {
        return Err(
            "its answer is JSON; it must be the access token alone, as plain text".to_owned(),
        );
    }
    if text.chars().any(char::is_whitespace) {
        return Err(
            "its answer holds several words; it must be the access token alone, as plain text"
                .to_owned(),
        );
    }
    Ok(SecretString::from(text.to_owned()))
}

/// A JWT's `exp`, when `token` is a JWT with a numeric one (Zoom's access tokens are).
pub fn jwt_expiry(token: &str) -> Option<DateTime<Utc>> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?;
    let secs = exp.as_i64().or_else(|| exp.as_f64().map(|f| f as i64))?;
    DateTime::from_timestamp(secs, 0)
}

/// Until when a token from a callback is trusted, at `now`: its JWT `exp`, which must
/// be at least [`MIN_VALIDITY`] away; otherwise exactly [`MIN_VALIDITY`] (the
/// customer's promise).
pub fn expiry(token: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let min = chrono::Duration::from_std(MIN_VALIDITY).unwrap_or_default();
    match jwt_expiry(token) {
        None => Ok(now + min),
        Some(exp) if exp >= now + min => Ok(exp),
        Some(exp) if exp > now => Err(format!(
            "the token it returned expires in {} s; it must be valid for at least {} s more",
            (exp - now).num_seconds(),
            MIN_VALIDITY.as_secs()
        )),
        Some(exp) => Err(format!(
            "the token it returned expired {} s ago; it must be valid for at least {} s more",
            (now - exp).num_seconds(),
            MIN_VALIDITY.as_secs()
        )),
    }
}

/// Creates a customer-managed connection: checks the input and the URL, asks the
/// callback for a token, reads whose it is at Zoom (`/users/me`; the user must be
/// active), and stores the connection (state `connected`, no refresh token, the URL
/// and the token sealed, scopes unknown: empty), with its `created` event and, with
/// the local recording capability, a meeting sync asked for now.
///
/// A Zoom user who already has a connection to the app is refused with
/// [`ConnectionError::UserAlreadyConnected`], changing nothing. A URL that breaks the
/// rules is a field problem on `access_token_callback_url`; a callback that gives no
/// usable token is [`ConnectionError::TokenCallbackFailed`].
pub async fn create_from_callback(
    keeper: &Arc<Keeper>,
    project_id: &str,
    new: NewCallbackConnection,
) -> Result<ConnectionRow, ConnectionError> {
    let mut problems = Problems::default();
    let metadata = new.metadata.filter(|m| !m.is_null());
    if let Some(m) = &metadata {
        check_metadata(m, &mut problems);
    }
    if !new.is_local_recording_token_supported && !new.is_onbehalf_token_supported {
        problems.add(
            "is_local_recording_token_supported",
            "At least one of is_local_recording_token_supported and is_onbehalf_token_supported must be true.",
        );
    }
    let url = new.url.trim().to_owned();
    if let Err(problem) = check_url(&url, keeper.config.allow_private_callback_urls).await {
        problems.add(URL_FIELD, problem);
    }
    problems.into_result()?;
    let app = resolve_app(keeper, project_id, new.app_id.as_deref()).await?;

    let fetched = match fetch(keeper, &url).await {
        Ok(t) => t,
        Err(FetchError::UrlRefused(problem)) => return Err(invalid(URL_FIELD, problem)),
        Err(e @ FetchError::Failed(_)) => {
            return Err(ConnectionError::TokenCallbackFailed(e.sentence()))
        }
    };
    let user = match keeper.zoom.me(&fetched.token).await {
        Ok(user) => user,
        Err(ZoomError::AccessTokenRejected { code, .. }) => {
            return Err(ConnectionError::TokenCallbackFailed(failure_sentence(
                &format!("Zoom did not accept the token it returned (Zoom code {code}); it must return a current access token of the user"),
            )))
        }
        Err(e) => return Err(ConnectionError::Zoom(e)),
    };
    if !user.is_active() {
        return Err(ConnectionError::ZoomUserNotActive(
            user.status.clone().unwrap_or_default(),
        ));
    }
    let already = |existing: ConnectionRow| ConnectionError::UserAlreadyConnected {
        user_id: existing.user_id,
        connection_id: existing.id,
    };
    if let Some(existing) = keeper.store.connection_by_user(&app.id, &user.id).await? {
        return Err(already(existing));
    }
    if app.kind == AppKind::AccountLevel {
        // The token must be an admin's, and the account have no connection yet.
        if user.is_plain_member() {
            return Err(ConnectionError::NotAccountAdmin);
        }
        if let Some(existing) = keeper
            .store
            .connection_in_account(&app.id, &user.account_id)
            .await?
        {
            return Err(ConnectionError::AccountAlreadyConnected {
                account_id: existing.account_id,
                connection_id: existing.id,
            });
        }
    }

    let id = IdKind::Connection.generate();
    let now = keeper.clock.now();
    let row = ConnectionRow {
        id: id.clone(),
        project_id: project_id.to_owned(),
        app_id: app.id.clone(),
        user_id: user.id.clone(),
        account_id: user.account_id.clone(),
        email: (!user.email.is_empty()).then(|| user.email.clone()),
        pmi: user.pmi.clone(),
        personal_meeting_url: user.personal_meeting_url.clone(),
        state: ConnectionState::Connected,
        connection_failure_data: None,
        metadata,
        deduplication_key: None,
        is_local_recording_token_supported: new.is_local_recording_token_supported,
        is_onbehalf_token_supported: new.is_onbehalf_token_supported,
        scopes: Vec::new(),
        refresh_token: None,
        access_token: Some(keeper.vault.seal_str(
            Slot::connection_access_token(&id),
            fetched.token.expose_secret(),
        )),
        access_token_expires_at: Some(fetched.expires_at),
        lease_owner: None,
        lease_until: None,
        fence: 0,
        // Never due: the token keeper has no grant of ours to refresh.
        refresh_due_at: None,
        last_attempted_sync_at: None,
        last_successful_sync_at: None,
        next_sync_at: new.is_local_recording_token_supported.then_some(now),
        sync_requested_at: new.is_local_recording_token_supported.then_some(now),
        last_successful_token_refresh_at: Some(now),
        created_at: now,
        updated_at: now,
        access_token_callback_url: Some(keeper.vault.seal_str(url_slot(&id), &url)),
        sync_pass_started_at: None,
        sync_users_done: None,
        sync_users_total: None,
    };
    let event = NewConnectionEvent {
        kind: "created".to_owned(),
        message: format!(
            "Connected Zoom user {} of account {}; its access tokens come from the customer's access_token_callback_url.",
            row.user_id, row.account_id
        ),
        data: Some(json!({"scopes": row.scopes, "access_token_source": "callback"})),
    };
    match keeper.store.insert_connection(&row, &event, None).await {
        Ok(()) => Ok(row),
        // A concurrent create for the same user got in first.
        Err(StoreError::Conflict { .. }) => {
            match keeper.store.connection_by_user(&app.id, &user.id).await? {
                Some(existing) => Err(already(existing)),
                None => Err(internal(anyhow::anyhow!(
                    "inserting a connection conflicted, but no connection of its user exists"
                ))),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Opens a customer-managed connection's callback URL.
pub(crate) fn open_url(
    keeper: &Keeper,
    row: &ConnectionRow,
) -> Option<Result<SecretString, String>> {
    let sealed = row.access_token_callback_url.as_ref()?;
    Some(
        keeper
            .vault
            .open_str(url_slot(&row.id), sealed)
            .map_err(|e| e.to_string()),
    )
}

/// How `row`'s callback URL is shown back (Recall's `access_token_callback_url`):
/// the customer puts secrets in its query string, so only the scheme, host, port,
/// path and the query's parameter names are shown, each value as `***`; user info
/// and fragment are dropped. `None` for a connection without a callback.
pub fn shown_url(keeper: &Keeper, row: &ConnectionRow) -> Option<String> {
    let sealed = row.access_token_callback_url.as_ref()?;
    let url = match keeper.vault.open_str(url_slot(&row.id), sealed) {
        Ok(url) => url,
        Err(e) => {
            tracing::error!(connection_id = %row.id, error = %e, "a sealed access_token_callback_url does not open");
            return Some("***".to_owned());
        }
    };
    let Ok(mut url) = url::Url::parse(url.expose_secret()) else {
        return Some("***".to_owned());
    };
    let names: Vec<String> = url
        .query_pairs()
        .map(|(name, _)| name.into_owned())
        .collect();
    if names.is_empty() {
        url.set_query(None);
    } else {
        let query = names
            .iter()
            .map(|name| {
                format!(
                    "{}=***",
                    form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        url.set_query(Some(&query));
    }
    // Cannot fail for the http(s) URLs a callback has.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_fragment(None);
    Some(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: Value) -> String {
        let enc = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.{}",
            enc(br#"{"alg":"HS512","typ":"JWT"}"#),
            enc(claims.to_string().as_bytes()),
            enc(b"signature")
        )
    }

    #[test]
    fn a_jwt_is_trusted_until_its_exp_and_only_with_120_s_left() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        let exp = now + chrono::Duration::seconds(3599);
        let token = jwt(json!({"exp": exp.timestamp(), "uid": "u"}));
        assert_eq!(jwt_expiry(&token), Some(exp));
        assert_eq!(expiry(&token, now), Ok(exp));
        let at_limit = jwt(json!({"exp": now.timestamp() + 120}));
        assert!(expiry(&at_limit, now).is_ok());
        let short = jwt(json!({"exp": now.timestamp() + 119}));
        let why = expiry(&short, now).expect_err("too short");
        assert!(why.contains("expires in 119 s"), "{why}");
        let old = jwt(json!({"exp": now.timestamp() - 10}));
        assert!(expiry(&old, now)
            .expect_err("expired")
            .contains("expired 10 s ago"));
    }

    #[test]
    fn a_token_that_is_not_a_jwt_counts_as_valid_for_120_s() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        let min = chrono::Duration::seconds(120);
        for token in [
            "zsim_at_abc",
            "a.b.c",
            "a.b",
            "a.b.c.d",
            &jwt(json!({"exp": "soon"})),
            &jwt(json!({"iat": 1})),
        ] {
            assert_eq!(jwt_expiry(token), None, "{token}");
            assert_eq!(expiry(token, now), Ok(now + min), "{token}");
        }
    }

    #[test]
    fn a_body_must_be_one_plain_token() {
        assert_eq!(
            one_token(b"  tok-1\n").expect("one").expose_secret(),
            "tok-1"
        );
        assert!(one_token(b"").expect_err("empty").contains("empty"));
        assert!(one_token(b" \n ").expect_err("blank").contains("empty"));
        assert!(one_token(b"a b")
            .expect_err("two")
            .contains("several words"));
        assert!(one_token(br#"{"access_token":"x"}"#)
            .expect_err("json")
            .contains("JSON"));
        assert!(one_token(&[0xff, 0xfe])
            .expect_err("bytes")
            .contains("UTF-8"));
    }
}
