//! The simulated Zoom: apps, users, meetings, grants and tokens, and every rule about
//! them. No HTTP here; handlers lock the world, call one method, and answer.

use std::collections::{BTreeMap, HashMap};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chrono::{DateTime, Datelike, Duration, SecondsFormat, Utc};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::types::*;
use crate::zoom_error::{ApiError, OAuthError};

/// What zoomkeeper asks a user to grant for the local recording capability (its
/// default capability): the user, their meetings, the local recording token and a
/// ZAK from `GET /users/me/zak`.
pub const LOCAL_RECORDING_SCOPES: &[&str] = &[
    "user:read:user",
    "user:read:zak",
    "meeting:read:list_meetings",
    "meeting:read:local_recording_token",
];
/// What zoomkeeper asks a user to grant for the onbehalf capability.
pub const ONBEHALF_SCOPES: &[&str] = &["user:read:user", "user:read:token"];

/// Granted by default: the scope set zoomkeeper asks users for by default (local
/// recording). Not every scope: a default that covered every endpoint would hide a
/// client calling an endpoint its users' grants do not cover.
pub const DEFAULT_SCOPES: &[&str] = LOCAL_RECORDING_SCOPES;

// Any one of these (granular, granular admin, then classic) lets a caller use the
// endpoint, as Zoom's API reference lists them per endpoint.

/// `GET /users/me`.
pub const SCOPES_USERS_ME: &[&str] = &[
    "user:read:user",
    "user:read:user:admin",
    "user:read",
    "user:read:admin",
];
/// `GET /users/{userId}/meetings`.
pub const SCOPES_LIST_MEETINGS: &[&str] = &[
    "meeting:read:list_meetings",
    "meeting:read:list_meetings:admin",
    "meeting:read",
    "meeting:read:admin",
];
/// `GET /meetings/{meetingId}/jointoken/local_recording`.
pub const SCOPES_LOCAL_RECORDING: &[&str] = &[
    "meeting:read:local_recording_token",
    "meeting:read:local_recording_token:admin",
    "meeting_token:read:local_recording",
    "meeting_token:read:admin:local_recording",
];
/// `GET /users/me/zak` ("Get the user's ZAK": `user:read:zak`, `user:read:zak:admin`,
/// classic `user_zak:read`).
pub const SCOPES_ZAK: &[&str] = &["user:read:zak", "user:read:zak:admin", "user_zak:read"];
/// `GET /users/{userId}/token?type=zak|onbehalf` ("Get a user's token": granular
/// `user:read:token`, `…:admin` for other users; classic `user:read`,
/// `user:read:admin`). The ZAK scopes do not open it.
pub const SCOPES_USER_TOKEN: &[&str] = &[
    "user:read:token",
    "user:read:token:admin",
    "user:read",
    "user:read:admin",
];

// The admin variants: with one of these, an owner or admin of the account may act for
// the account's other users (an account-level app). Zoom's API reference lists them per
// endpoint next to the non-admin ones.

/// `GET /users` ("List users": granular `user:read:list_users:admin`, classic
/// `user:read:admin`; developers.zoom.us/docs/api/users/#tag/users/GET/users). There is
/// no non-admin variant.
pub const SCOPES_LIST_USERS: &[&str] = &["user:read:list_users:admin", "user:read:admin"];
/// `GET /users/{userId}/meetings` for a user other than the caller ("List meetings":
/// `meeting:read:list_meetings:admin`, classic `meeting:read:admin`).
pub const SCOPES_LIST_MEETINGS_ADMIN: &[&str] =
    &["meeting:read:list_meetings:admin", "meeting:read:admin"];
/// `GET /users/{userId}/token` for a user other than the caller ("Get a user's token":
/// `user:read:token:admin`, classic `user:read:admin`).
pub const SCOPES_USER_TOKEN_ADMIN: &[&str] = &["user:read:token:admin", "user:read:admin"];
/// `GET /meetings/{meetingId}/jointoken/local_recording` for a meeting the caller does
/// not host ("Get a meeting's join token for local recording":
/// `meeting:read:local_recording_token:admin`, classic
/// `meeting_token:read:admin:local_recording`).
pub const SCOPES_LOCAL_RECORDING_ADMIN: &[&str] = &[
    "meeting:read:local_recording_token:admin",
    "meeting_token:read:admin:local_recording",
];
/// What an account-level app asks its admin to grant (DESIGN.md §15): every endpoint
/// above, for any user of the account.
pub const ACCOUNT_LEVEL_SCOPES: &[&str] = &[
    "user:read:user:admin",
    "user:read:list_users:admin",
    "meeting:read:list_meetings:admin",
    "meeting:read:local_recording_token:admin",
    "user:read:zak:admin",
    "user:read:token:admin",
];

/// Zoom's webhook retry delays, in seconds, before scaling.
pub const WEBHOOK_RETRY_DELAYS_S: [f64; 3] = [300.0, 1200.0, 3600.0];
/// Zoom revalidates a validated endpoint every 72 hours (scaled like the retries).
pub const WEBHOOK_REVALIDATION_S: f64 = 72.0 * 3600.0;

/// Most members `POST /_sim/accounts` creates in one call.
pub const MAX_ACCOUNT_MEMBERS: u32 = 20_000;
/// Most meetings `POST /_sim/accounts` creates in one call.
pub const MAX_ACCOUNT_MEETINGS: u64 = 200_000;

/// Longest configurable token or code lifetime: ten years.
const MAX_TTL_S: u64 = 10 * 365 * 24 * 3600;
/// Largest configurable clock shift, either way: a hundred years.
const MAX_CLOCK_OFFSET_S: i64 = 100 * 365 * 24 * 3600;
const MAX_WEBHOOK_TIMEOUT_MS: u64 = 3_600_000;

const LOCAL_RECORDING_TOKEN_TTL_S: i64 = 120;
/// `type=zak` and `type=onbehalf` without `ttl`: two hours.
const USER_TOKEN_TTL_S: i64 = 7200;
/// The largest `ttl` of `type=zak`: one year.
const MAX_USER_TOKEN_TTL_S: i64 = 365 * 24 * 3600;
/// A ZAK from `GET /users/me/zak` expires five minutes after receipt.
const ME_ZAK_TTL_S: i64 = 300;

#[derive(Debug, Clone)]
pub struct Config {
    pub access_token_ttl_s: u64,
    pub code_ttl_s: u64,
    pub refresh_token_ttl_s: u64,
    pub webhook_retry_scale: f64,
    pub webhook_timeout_ms: u64,
    pub clock_offset_s: i64,
    pub jwt_access_tokens: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            access_token_ttl_s: 3599,
            code_ttl_s: 300,
            refresh_token_ttl_s: 90 * 24 * 3600,
            webhook_retry_scale: 1.0,
            webhook_timeout_ms: 3000,
            clock_offset_s: 0,
            jwt_access_tokens: false,
        }
    }
}

impl Config {
    pub fn to_public(&self) -> SimConfig {
        SimConfig {
            access_token_ttl_s: Some(self.access_token_ttl_s),
            code_ttl_s: Some(self.code_ttl_s),
            refresh_token_ttl_s: Some(self.refresh_token_ttl_s),
            webhook_retry_scale: Some(self.webhook_retry_scale),
            webhook_timeout_ms: Some(self.webhook_timeout_ms),
            clock_offset_s: Some(self.clock_offset_s),
            jwt_access_tokens: Some(self.jwt_access_tokens),
        }
    }
}

#[derive(Debug, Clone)]
pub struct App {
    pub client_id: String,
    pub client_secret: String,
    pub webhook_secret: String,
    pub webhook_url: Option<String>,
    pub kind: SimAppKind,
    pub scopes: Vec<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub url_validated: Option<bool>,
    /// Set when an event's last retry failed (or a revalidation failed): Zoom sends
    /// this app no more events until someone intervenes (`resume_events`).
    pub events_stopped_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct User {
    pub seq: u64,
    pub id: String,
    pub account_id: String,
    pub email: String,
    pub pmi: u64,
    pub pmi_password: String,
    pub status: SimUserStatus,
    pub role: SimUserRole,
    pub first_name: String,
    pub last_name: String,
    pub timezone: String,
    pub created_at: DateTime<Utc>,
    /// The "Local recording" setting: off, the local recording token of the user's
    /// meetings is refused.
    pub local_recording: bool,
}

impl User {
    /// Zoom's `role_name` and `role_id` of the three built-in roles.
    fn role(&self) -> (&'static str, &'static str) {
        match self.role {
            SimUserRole::Owner => ("Owner", "0"),
            SimUserRole::Admin => ("Admin", "1"),
            SimUserRole::Member => ("Member", "2"),
        }
    }

    fn is_admin(&self) -> bool {
        matches!(self.role, SimUserRole::Owner | SimUserRole::Admin)
    }

    fn status_str(&self) -> &'static str {
        status_str(self.status)
    }

    /// An element of `users` in "List users" (the fields of Zoom's example answer, no
    /// optional `include_fields`).
    fn list_object(&self) -> Value {
        json!({
            "id": self.id,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "display_name": format!("{} {}", self.first_name, self.last_name),
            "email": self.email,
            "type": 2,
            "pmi": self.pmi,
            "timezone": self.timezone,
            "verified": 1,
            "dept": "",
            "created_at": rfc3339(self.created_at),
            "user_created_at": rfc3339(self.created_at),
            "last_login_time": rfc3339(self.created_at),
            "last_client_version": "",
            "language": "en-US",
            "phone_number": "",
            "status": self.status_str(),
            "role_id": self.role().1,
            "group_ids": [],
            "im_group_ids": [],
        })
    }

    pub fn personal_meeting_url(&self) -> String {
        format!(
            "https://us05web.zoom.us/j/{}?pwd={}",
            self.pmi, self.pmi_password
        )
    }

    fn public(&self) -> SimUserCreated {
        SimUserCreated {
            id: self.id.clone(),
            account_id: self.account_id.clone(),
            email: self.email.clone(),
            pmi: self.pmi,
            personal_meeting_url: self.personal_meeting_url(),
            status: self.status,
            role: self.role,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Meeting {
    pub id: u64,
    pub uuid: String,
    pub host_id: String,
    pub topic: String,
    pub meeting_type: u8,
    pub start_time: Option<DateTime<Utc>>,
    pub duration: u32,
    pub timezone: String,
    pub password: String,
    pub created_at: DateTime<Utc>,
}

impl Meeting {
    pub fn join_url(&self) -> String {
        format!(
            "https://us05web.zoom.us/j/{}?pwd={}",
            self.id, self.password
        )
    }

    /// Whether Zoom no longer lists the meeting as scheduled: a meeting with a fixed
    /// time expires 30 days after it was scheduled to end, one without (type 3) or a
    /// recurring one 365 days after it was made (Zoom support, "Meeting ID
    /// expiration": 30 days for non-recurring, 365 days for recurring meetings).
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        let until = match (self.meeting_type, self.start_time) {
            (1 | 2, Some(start)) => start
                .checked_add_signed(Duration::minutes(i64::from(self.duration)))
                .and_then(|end| end.checked_add_signed(Duration::days(30))),
            _ => self.created_at.checked_add_signed(Duration::days(365)),
        };
        until.is_some_and(|u| u < now)
    }

    /// The object of `meeting.created`/`meeting.deleted` and of the meetings list.
    fn object(&self) -> Value {
        let mut o = json!({
            "uuid": self.uuid,
            "id": self.id,
            "host_id": self.host_id,
            "topic": self.topic,
            "type": self.meeting_type,
            "duration": self.duration,
            "timezone": self.timezone,
            "created_at": rfc3339(self.created_at),
            "join_url": self.join_url(),
        });
        if let Some(start) = self.start_time {
            o["start_time"] = json!(rfc3339(start));
        }
        o
    }
}

#[derive(Debug, Clone)]
struct Code {
    client_id: String,
    user_id: String,
    redirect_uri: String,
    scopes: Vec<String>,
    code_challenge: Option<String>,
    expires_at: DateTime<Utc>,
    used: bool,
}

/// Everything a user has granted one app. Deauthorizing or revoking kills it, and with it
/// every token minted under it.
#[derive(Debug, Clone)]
struct Grant {
    alive: bool,
    scopes: Vec<String>,
    current_refresh_token: Option<String>,
    /// Counts the user's code exchanges: a new authorization supersedes every token
    /// issued under an earlier one, access tokens included (Zoom error 4741).
    authorization: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
    Zak,
    Onbehalf,
    LocalRecording,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access_token",
            TokenKind::Refresh => "refresh_token",
            TokenKind::Zak => "zak",
            TokenKind::Onbehalf => "onbehalf",
            TokenKind::LocalRecording => "local_recording",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            TokenKind::Access => "zsim_at",
            TokenKind::Refresh => "zsim_rt",
            TokenKind::Zak => "zsim_zak",
            TokenKind::Onbehalf => "zsim_obf",
            TokenKind::LocalRecording => "zsim_lrt",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenState {
    Live,
    /// A refresh token that was exchanged for a new pair.
    Rotated,
    /// A refresh token replaced by a newer authorization of the same grant.
    Superseded,
    /// A single-use (onbehalf) token that has been used.
    Used,
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokenKind,
    client_id: String,
    user_id: Option<String>,
    account_id: Option<String>,
    grant: Option<u64>,
    /// The grant's `authorization` this token was issued under.
    authorization: u64,
    meeting_id: Option<u64>,
    scopes: Vec<String>,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    state: TokenState,
    bypass_waiting_room: Option<bool>,
    /// The user whose grant minted it: the token's own user, or an account admin who
    /// minted a ZAK or onbehalf token for another user of the account.
    minted_by: Option<String>,
}

/// The successful answer of `/oauth/token`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub expires_in: u64,
    pub scope: String,
    pub api_url: String,
}

/// Who is calling `/v2`, from the bearer token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub client_id: String,
    pub user_id: Option<String>,
    pub scopes: Vec<String>,
}

/// A webhook to send once the lock is released.
#[derive(Debug, Clone)]
pub struct WebhookJob {
    pub delivery_id: u64,
    pub url: String,
    pub secret: String,
    pub body: String,
}

#[derive(Debug, Default, Clone)]
struct RateWindow {
    second: i64,
    count: u32,
}

#[derive(Default)]
pub struct World {
    pub config: Config,
    pub faults: SimFaults,
    pub stats: SimStats,
    apps: HashMap<String, App>,
    users: HashMap<String, User>,
    /// Each user's PMI, to the user's id (PMIs and meeting numbers never collide).
    pmis: HashMap<u64, String>,
    meetings: BTreeMap<u64, Meeting>,
    codes: HashMap<String, Code>,
    grants: HashMap<u64, Grant>,
    grant_ids: HashMap<(String, String), u64>,
    tokens: HashMap<String, Token>,
    rate_windows: HashMap<String, RateWindow>,
    /// Requests per Zoom account on one (simulated) UTC day.
    daily_windows: HashMap<String, (chrono::NaiveDate, u32)>,
    deliveries: BTreeMap<u64, SimWebhookDelivery>,
    next_seq: u64,
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn random_token(n: usize) -> String {
    random_alnum(n)
}

fn random_alnum(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

fn scopes_satisfy(granted: &[String], any_of: &[&str]) -> bool {
    granted.iter().any(|g| any_of.contains(&g.as_str()))
}

fn missing_scopes(any_of: &[&str]) -> ApiError {
    ApiError::new(
        400,
        4711,
        format!(
            "Invalid access token, does not contain scopes:[{}].",
            any_of.join(", ")
        ),
    )
}

/// A JWT-shaped token like Zoom's access tokens: `header.payload.signature`, each
/// base64url; the payload carries `exp`, `iat`, `uid` and `jti` (the opaque id, which
/// keeps tokens unique). The signature is random: nothing verifies it.
fn jwt_shaped(
    jti: &str,
    user_id: Option<&str>,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> String {
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let claims = serde_json::json!({
        "ver": 9,
        "uid": user_id,
        "jti": jti,
        "iat": issued_at.timestamp(),
        "exp": expires_at.timestamp(),
    });
    format!(
        "{}.{}.{}",
        b64(br#"{"alg":"HS512","v":"2.0","kid":"zsim"}"#),
        b64(claims.to_string().as_bytes()),
        b64(random_alnum(43).as_bytes())
    )
}

/// Token ids may embed user ids; keep them URL-path safe.
fn token_part(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

impl World {
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::seconds(self.config.clock_offset_s)
    }

    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    pub fn reset(&mut self) {
        *self = World::default();
    }

    /// Checks every value before changing any: lifetimes and the clock offset feed
    /// date arithmetic that panics on overflow, so they are bounded to sane ranges.
    pub fn apply_config(&mut self, c: &SimConfig) -> Result<(), String> {
        if let Some(scale) = c.webhook_retry_scale {
            if !(scale.is_finite() && scale >= 0.0) {
                return Err("webhook_retry_scale must be a finite number ≥ 0".into());
            }
        }
        for (name, value) in [
            ("access_token_ttl_s", c.access_token_ttl_s),
            ("code_ttl_s", c.code_ttl_s),
            ("refresh_token_ttl_s", c.refresh_token_ttl_s),
        ] {
            if value.is_some_and(|v| v > MAX_TTL_S) {
                return Err(format!("{name} must be at most {MAX_TTL_S} (ten years)"));
            }
        }
        if c.webhook_timeout_ms
            .is_some_and(|v| v > MAX_WEBHOOK_TIMEOUT_MS)
        {
            return Err(format!(
                "webhook_timeout_ms must be at most {MAX_WEBHOOK_TIMEOUT_MS}"
            ));
        }
        if c.clock_offset_s
            .is_some_and(|v| v.unsigned_abs() > MAX_CLOCK_OFFSET_S.unsigned_abs())
        {
            return Err(format!(
                "clock_offset_s must be within ±{MAX_CLOCK_OFFSET_S} (a hundred years)"
            ));
        }
        if let Some(scale) = c.webhook_retry_scale {
            self.config.webhook_retry_scale = scale;
        }
        if let Some(v) = c.access_token_ttl_s {
            self.config.access_token_ttl_s = v;
        }
        if let Some(v) = c.code_ttl_s {
            self.config.code_ttl_s = v;
        }
        if let Some(v) = c.refresh_token_ttl_s {
            self.config.refresh_token_ttl_s = v;
        }
        if let Some(v) = c.webhook_timeout_ms {
            self.config.webhook_timeout_ms = v;
        }
        if let Some(v) = c.clock_offset_s {
            self.config.clock_offset_s = v;
        }
        if let Some(v) = c.jwt_access_tokens {
            self.config.jwt_access_tokens = v;
        }
        Ok(())
    }

    // ---- apps -------------------------------------------------------------------

    pub fn upsert_app(&mut self, a: &SimApp) -> Result<(), String> {
        if a.client_id.trim().is_empty() || a.client_secret.is_empty() {
            return Err("client_id and client_secret must not be empty".into());
        }
        let existing = self.apps.get(&a.client_id).cloned();
        let app = App {
            client_id: a.client_id.clone(),
            client_secret: a.client_secret.clone(),
            webhook_secret: a
                .webhook_secret
                .clone()
                .or_else(|| existing.as_ref().map(|e| e.webhook_secret.clone()))
                .unwrap_or_else(|| random_alnum(22)),
            webhook_url: a
                .webhook_url
                .clone()
                .or_else(|| existing.as_ref().and_then(|e| e.webhook_url.clone())),
            kind: a
                .kind
                .or(existing.as_ref().map(|e| e.kind))
                .unwrap_or_default(),
            scopes: a
                .scopes
                .clone()
                .or_else(|| existing.as_ref().map(|e| e.scopes.clone()))
                .unwrap_or_else(|| DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect()),
            redirect_uris: a
                .redirect_uris
                .clone()
                .or_else(|| existing.as_ref().and_then(|e| e.redirect_uris.clone())),
            url_validated: existing.as_ref().and_then(|e| e.url_validated),
            events_stopped_at: existing.as_ref().and_then(|e| e.events_stopped_at),
        };
        self.apps.insert(app.client_id.clone(), app);
        Ok(())
    }

    pub fn patch_app(&mut self, client_id: &str, p: &SimAppPatch) -> Option<()> {
        let app = self.apps.get_mut(client_id)?;
        if let Some(v) = &p.client_secret {
            app.client_secret = v.clone();
        }
        if let Some(v) = &p.webhook_secret {
            app.webhook_secret = v.clone();
        }
        if let Some(v) = &p.webhook_url {
            app.webhook_url = Some(v.clone()).filter(|u| !u.is_empty());
        }
        if let Some(v) = p.kind {
            app.kind = v;
        }
        if let Some(v) = &p.scopes {
            app.scopes = v.clone();
        }
        if let Some(v) = &p.redirect_uris {
            app.redirect_uris = Some(v.clone());
        }
        if p.resume_events == Some(true) {
            app.events_stopped_at = None;
        }
        Some(())
    }

    pub fn app(&self, client_id: &str) -> Option<&App> {
        self.apps.get(client_id)
    }

    pub fn app_info(&self, client_id: &str) -> Option<SimAppInfo> {
        self.apps.get(client_id).map(|a| SimAppInfo {
            client_id: a.client_id.clone(),
            client_secret: a.client_secret.clone(),
            webhook_secret: a.webhook_secret.clone(),
            webhook_url: a.webhook_url.clone(),
            kind: a.kind,
            scopes: a.scopes.clone(),
            redirect_uris: a.redirect_uris.clone(),
            url_validated: a.url_validated,
            events_stopped_at: a.events_stopped_at.map(rfc3339),
        })
    }

    pub fn set_url_validated(&mut self, client_id: &str, ok: bool) {
        if let Some(a) = self.apps.get_mut(client_id) {
            a.url_validated = Some(ok);
        }
    }

    // ---- users and meetings --------------------------------------------------------

    fn pmi_taken(&self, pmi: u64) -> bool {
        self.pmis.contains_key(&pmi) || self.meetings.contains_key(&pmi)
    }

    fn fresh_number(&self, min: u64, max: u64) -> u64 {
        let mut rng = rand::thread_rng();
        loop {
            let n = rng.gen_range(min..max);
            if !self.pmi_taken(n) {
                return n;
            }
        }
    }

    pub fn create_user(&mut self, u: &SimUser) -> Result<SimUserCreated, ApiError> {
        let id = u.id.clone().unwrap_or_else(|| random_alnum(22));
        if id.trim().is_empty() {
            return Err(ApiError::control(400, "id must not be empty"));
        }
        if self.users.contains_key(&id) {
            return Err(ApiError::control(409, format!("user {id} already exists")));
        }
        if let Some(pmi) = u.pmi {
            if !(1_000_000_000..100_000_000_000).contains(&pmi) {
                return Err(ApiError::control(400, "pmi must have 10 or 11 digits"));
            }
            if self.pmi_taken(pmi) {
                return Err(ApiError::control(
                    409,
                    format!("pmi {pmi} is already in use"),
                ));
            }
        }
        let account_id = u.account_id.clone().unwrap_or_else(|| random_alnum(22));
        let account_has_users = self.users.values().any(|x| x.account_id == account_id);
        let role = u.role.unwrap_or(if account_has_users {
            SimUserRole::Member
        } else {
            SimUserRole::Owner
        });
        Ok(self.insert_user(id, account_id, role, u))
    }

    /// Adds a user whose id and PMI (when given) were checked to be free.
    fn insert_user(
        &mut self,
        id: String,
        account_id: String,
        role: SimUserRole,
        u: &SimUser,
    ) -> SimUserCreated {
        let seq = self.next_seq();
        let user = User {
            seq,
            email: u
                .email
                .clone()
                .unwrap_or_else(|| format!("user{seq}@sim.zoom.test")),
            pmi: u
                .pmi
                .unwrap_or_else(|| self.fresh_number(1_000_000_000, 10_000_000_000)),
            pmi_password: random_alnum(32),
            status: u.status.unwrap_or_default(),
            role,
            first_name: u.first_name.clone().unwrap_or_else(|| "Sim".into()),
            last_name: u.last_name.clone().unwrap_or_else(|| format!("User {seq}")),
            timezone: u.timezone.clone().unwrap_or_else(|| "UTC".into()),
            created_at: self.now(),
            local_recording: u.local_recording.unwrap_or(true),
            id: id.clone(),
            account_id,
        };
        let public = user.public();
        self.pmis.insert(user.pmi, id.clone());
        self.users.insert(id, user);
        public
    }

    /// `POST /_sim/accounts`: an account's admin, `members` members and
    /// `meetings_per_user` meetings for each of them (the admin included), at once.
    /// Checks everything before changing anything; `meeting.created` is sent only
    /// when `send_webhooks` is true.
    pub fn create_account(
        &mut self,
        a: &SimAccount,
    ) -> Result<(SimAccountCreated, Vec<WebhookJob>), ApiError> {
        if a.members > MAX_ACCOUNT_MEMBERS {
            return Err(ApiError::control(
                400,
                format!("members must be at most {MAX_ACCOUNT_MEMBERS}"),
            ));
        }
        let meetings = (u64::from(a.members) + 1) * u64::from(a.meetings_per_user);
        if meetings > MAX_ACCOUNT_MEETINGS {
            return Err(ApiError::control(
                400,
                format!(
                    "(members + 1) × meetings_per_user is {meetings}; at most {MAX_ACCOUNT_MEETINGS} meetings per call"
                ),
            ));
        }
        let mut admin = a.admin.clone().unwrap_or_default();
        let account_id = match (&a.account_id, &admin.account_id) {
            (Some(x), Some(y)) if x != y => {
                return Err(ApiError::control(
                    400,
                    "admin.account_id differs from account_id; give one of them",
                ))
            }
            (Some(x), _) | (None, Some(x)) => x.clone(),
            (None, None) => random_alnum(22),
        };
        if account_id.trim().is_empty() {
            return Err(ApiError::control(400, "account_id must not be empty"));
        }
        if admin.role == Some(SimUserRole::Member) {
            return Err(ApiError::control(
                400,
                "admin.role must be owner or admin (default admin)",
            ));
        }
        admin.account_id = Some(account_id.clone());
        admin.role = Some(admin.role.unwrap_or(SimUserRole::Admin));
        // The only step that can fail (a taken id or PMI); nothing has changed before it.
        let admin = self.create_user(&admin)?;
        let mut user_ids = Vec::with_capacity(a.members as usize);
        for _ in 0..a.members {
            let id = loop {
                let id = random_alnum(22);
                if !self.users.contains_key(&id) {
                    break id;
                }
            };
            self.insert_user(
                id.clone(),
                account_id.clone(),
                SimUserRole::Member,
                &SimUser::default(),
            );
            user_ids.push(id);
        }
        let now = self.now();
        let notify = a.send_webhooks.unwrap_or(false);
        let mut jobs = Vec::new();
        let mut meeting_ids = BTreeMap::new();
        for host in std::iter::once(&admin.id).chain(&user_ids) {
            let mut ids = Vec::with_capacity(a.meetings_per_user as usize);
            for k in 0..a.meetings_per_user {
                let m = SimMeeting {
                    topic: Some(format!("Meeting {} of {host}", k + 1)),
                    start_time: Some(now + Duration::days(i64::from(k) + 1)),
                    ..SimMeeting::default()
                };
                let (created, sent) = self.add_meeting(host, &m, notify)?;
                ids.push(created.id);
                jobs.extend(sent);
            }
            meeting_ids.insert(host.clone(), ids);
        }
        Ok((
            SimAccountCreated {
                account_id,
                admin_id: admin.id,
                user_ids,
                meeting_ids,
            },
            jobs,
        ))
    }

    /// Users in creation order.
    pub fn users(&self) -> Vec<&User> {
        let mut v: Vec<&User> = self.users.values().collect();
        v.sort_by_key(|u| u.seq);
        v
    }

    pub fn user_list(&self) -> Vec<SimUserCreated> {
        self.users().into_iter().map(User::public).collect()
    }

    pub fn patch_user(&mut self, id: &str, p: &SimUserPatch) -> Result<Vec<WebhookJob>, ApiError> {
        let Some(user) = self.users.get(id).cloned() else {
            return Err(ApiError::control(404, format!("no user {id}")));
        };
        if let Some(pmi) = p.pmi {
            if !(1_000_000_000..100_000_000_000).contains(&pmi) {
                return Err(ApiError::control(400, "pmi must have 10 or 11 digits"));
            }
            if pmi != user.pmi && self.pmi_taken(pmi) {
                return Err(ApiError::control(
                    409,
                    format!("pmi {pmi} is already in use"),
                ));
            }
        }
        let mut updated = user.clone();
        if let Some(pmi) = p.pmi {
            updated.pmi = pmi;
        }
        if let Some(s) = p.status {
            updated.status = s;
        }
        if let Some(r) = p.role {
            updated.role = r;
        }
        if let Some(e) = &p.email {
            updated.email = e.clone();
        }
        if let Some(on) = p.local_recording {
            updated.local_recording = on;
        }
        if updated.pmi != user.pmi {
            self.pmis.remove(&user.pmi);
            self.pmis.insert(updated.pmi, id.to_owned());
        }
        self.users.insert(id.to_owned(), updated.clone());
        let mut jobs = Vec::new();
        if updated.pmi != user.pmi {
            let now = self.now();
            let payload = json!({
                "account_id": user.account_id,
                "operator": user.email,
                "operator_id": user.id,
                "object": {"id": user.id, "pmi": updated.pmi},
                "old_object": {"id": user.id, "pmi": user.pmi},
                "time_stamp": now.timestamp_millis(),
            });
            jobs = self.fan_out("user.updated", payload, &updated);
        }
        Ok(jobs)
    }

    pub fn create_meeting(
        &mut self,
        user_id: &str,
        m: &SimMeeting,
    ) -> Result<(SimMeetingCreated, Vec<WebhookJob>), ApiError> {
        self.add_meeting(user_id, m, true)
    }

    /// Schedules a meeting; with `notify`, `meeting.created` goes to the apps installed
    /// for its host.
    fn add_meeting(
        &mut self,
        user_id: &str,
        m: &SimMeeting,
        notify: bool,
    ) -> Result<(SimMeetingCreated, Vec<WebhookJob>), ApiError> {
        let Some(host) = self.users.get(user_id).cloned() else {
            return Err(ApiError::control(404, format!("no user {user_id}")));
        };
        let meeting_type = m.meeting_type.unwrap_or(2);
        if ![1, 2, 3, 8].contains(&meeting_type) {
            return Err(ApiError::control(400, "type must be 1, 2, 3 or 8"));
        }
        let id = match m.id {
            Some(id) if !(100_000_000..100_000_000_000).contains(&id) => {
                return Err(ApiError::control(400, "id must have 9 to 11 digits"))
            }
            Some(id) if self.pmi_taken(id) => {
                return Err(ApiError::control(
                    409,
                    format!("meeting number {id} is in use"),
                ))
            }
            Some(id) => id,
            None => self.fresh_number(10_000_000_000, 100_000_000_000),
        };
        // RFC 3339 (Zoom's format) has four-digit years; later ones overflow date math.
        if m.start_time
            .is_some_and(|t| !(1..=9999).contains(&t.year()))
        {
            return Err(ApiError::control(
                400,
                "start_time must be between years 1 and 9999",
            ));
        }
        let now = self.now();
        let mut uuid_bytes = [0u8; 16];
        rand::thread_rng().fill(&mut uuid_bytes);
        let start_time = match meeting_type {
            3 => None,
            _ => Some(m.start_time.unwrap_or_else(|| now + Duration::hours(1))),
        };
        let meeting = Meeting {
            id,
            uuid: STANDARD.encode(uuid_bytes),
            host_id: host.id.clone(),
            topic: m
                .topic
                .clone()
                .unwrap_or_else(|| format!("{}'s meeting", host.first_name)),
            meeting_type,
            start_time,
            duration: m.duration.unwrap_or(60),
            timezone: m.timezone.clone().unwrap_or_else(|| host.timezone.clone()),
            password: random_alnum(32),
            created_at: now,
        };
        let created = SimMeetingCreated {
            id,
            uuid: meeting.uuid.clone(),
            host_id: host.id.clone(),
            join_url: meeting.join_url(),
        };
        if !notify {
            self.meetings.insert(id, meeting);
            return Ok((created, Vec::new()));
        }
        // `meeting.created` carries the password and the settings (Zoom's TypeScript
        // SDK zoom/rivet-javascript, `MeetingCreatedEvent`).
        let mut object = meeting.object();
        object["password"] = json!(meeting.password);
        object["pmi"] = json!(host.pmi.to_string());
        object["settings"] = json!({
            "use_pmi": false,
            "alternative_hosts": "",
            "meeting_invitees": [],
            "join_before_host": false,
            "jbh_time": 0,
        });
        let payload = json!({
            "account_id": host.account_id,
            "operator": host.email,
            "operator_id": host.id,
            "operation": "single",
            "object": object,
        });
        self.meetings.insert(id, meeting);
        let jobs = self.fan_out("meeting.created", payload, &host);
        Ok((created, jobs))
    }

    pub fn delete_meeting(&mut self, id: u64) -> Result<Vec<WebhookJob>, ApiError> {
        let Some(meeting) = self.meetings.remove(&id) else {
            return Err(ApiError::control(404, format!("no meeting {id}")));
        };
        let Some(host) = self.users.get(&meeting.host_id).cloned() else {
            return Ok(Vec::new());
        };
        let payload = json!({
            "account_id": host.account_id,
            "operator": host.email,
            "operator_id": host.id,
            "object": meeting.object(),
        });
        Ok(self.fan_out("meeting.deleted", payload, &host))
    }

    /// Deletes one occurrence of a recurring meeting: the series stays, and
    /// `meeting.deleted` names the occurrence in `object.occurrences` with
    /// `operation: "single"` (Zoom's TypeScript SDK zoom/rivet-javascript,
    /// `MeetingDeletedEvent`; Zoom's occurrence ids are the occurrence's start in
    /// epoch milliseconds).
    pub fn delete_occurrence(
        &mut self,
        id: u64,
        occurrence_id: &str,
    ) -> Result<Vec<WebhookJob>, ApiError> {
        let Some(meeting) = self.meetings.get(&id).cloned() else {
            return Err(ApiError::control(404, format!("no meeting {id}")));
        };
        if meeting.meeting_type != 8 {
            return Err(ApiError::control(
                400,
                format!("meeting {id} is not a recurring meeting with a fixed time (type 8)"),
            ));
        }
        let start = occurrence_id
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| ApiError::control(400, "occurrence_id must be epoch milliseconds"))?;
        let Some(host) = self.users.get(&meeting.host_id).cloned() else {
            return Ok(Vec::new());
        };
        let mut object = meeting.object();
        object["occurrences"] = json!([{
            "occurrence_id": occurrence_id.trim(),
            "start_time": rfc3339(start),
        }]);
        let payload = json!({
            "account_id": host.account_id,
            "operator": host.email,
            "operator_id": host.id,
            "operation": "single",
            "object": object,
        });
        Ok(self.fan_out("meeting.deleted", payload, &host))
    }

    // ---- webhooks -----------------------------------------------------------------

    /// An event about `user` goes to every app with a webhook URL that the user (or, for
    /// account-level apps, anyone in the user's account) has authorized.
    fn fan_out(&mut self, event: &str, payload: Value, user: &User) -> Vec<WebhookJob> {
        let mut targets: Vec<(String, String, String)> = Vec::new();
        let mut withheld: Vec<(String, String)> = Vec::new();
        for app in self.apps.values() {
            let Some(url) = &app.webhook_url else {
                continue;
            };
            let installed = self.grant_ids.iter().any(|((client, uid), gid)| {
                client == &app.client_id
                    && self.grants.get(gid).is_some_and(|g| g.alive)
                    && (uid == &user.id
                        || (app.kind == SimAppKind::AccountLevel
                            && self
                                .users
                                .get(uid)
                                .is_some_and(|u| u.account_id == user.account_id)))
            });
            if installed && app.events_stopped_at.is_some() {
                withheld.push((app.client_id.clone(), url.clone()));
            } else if installed {
                targets.push((
                    app.client_id.clone(),
                    url.clone(),
                    app.webhook_secret.clone(),
                ));
            }
        }
        targets.sort();
        for (client_id, url) in withheld {
            self.withhold_webhook(event, payload.clone(), &client_id, &url);
        }
        targets
            .into_iter()
            .map(|(client_id, url, secret)| {
                self.queue_webhook(event, payload.clone(), &client_id, &url, &secret)
            })
            .collect()
    }

    pub fn queue_webhook(
        &mut self,
        event: &str,
        payload: Value,
        client_id: &str,
        url: &str,
        secret: &str,
    ) -> WebhookJob {
        let body = json!({
            "event": event,
            "event_ts": self.now().timestamp_millis(),
            "payload": payload,
        });
        let id = self.next_seq();
        self.deliveries.insert(
            id,
            SimWebhookDelivery {
                id,
                event: event.to_owned(),
                client_id: client_id.to_owned(),
                url: url.to_owned(),
                attempts: 0,
                status: "pending".into(),
                last_status_code: None,
                last_error: None,
                body: body.clone(),
            },
        );
        WebhookJob {
            delivery_id: id,
            url: url.to_owned(),
            secret: secret.to_owned(),
            body: body.to_string(),
        }
    }

    /// An event Zoom does not send because the app's events are stopped: recorded
    /// as `withheld`, never delivered.
    fn withhold_webhook(&mut self, event: &str, payload: Value, client_id: &str, url: &str) {
        let job = self.queue_webhook(event, payload, client_id, url, "");
        self.stats.webhooks_withheld += 1;
        if let Some(d) = self.deliveries.get_mut(&job.delivery_id) {
            d.status = "withheld".into();
        }
    }

    /// Stops the app's events (Zoom: after the last failed retry "no further
    /// notifications ... will be sent"; a failed revalidation likewise).
    pub fn stop_events(&mut self, client_id: &str) {
        let now = self.now();
        if let Some(app) = self.apps.get_mut(client_id) {
            app.events_stopped_at.get_or_insert(now);
        }
    }

    /// Apps whose endpoint was validated and is due for Zoom's periodic revalidation.
    pub fn validated_apps(&self) -> Vec<String> {
        let mut apps: Vec<String> = self
            .apps
            .values()
            .filter(|a| a.url_validated == Some(true) && a.webhook_url.is_some())
            .map(|a| a.client_id.clone())
            .collect();
        apps.sort();
        apps
    }

    pub fn record_attempt(
        &mut self,
        delivery_id: u64,
        status: Option<u16>,
        error: Option<String>,
        delivered: bool,
        last: bool,
    ) {
        self.stats.webhooks_sent += 1;
        if delivered {
            self.stats.webhooks_delivered += 1;
        } else {
            self.stats.webhooks_failed += 1;
            if last {
                self.stats.webhooks_abandoned += 1;
            }
        }
        let abandoned = self
            .deliveries
            .get(&delivery_id)
            .filter(|d| !delivered && last && d.event != "endpoint.url_validation")
            .map(|d| d.client_id.clone());
        if let Some(client_id) = abandoned {
            self.stop_events(&client_id);
        }
        if let Some(d) = self.deliveries.get_mut(&delivery_id) {
            d.attempts += 1;
            d.last_status_code = status;
            d.last_error = error;
            d.status = match (delivered, last) {
                (true, _) => "delivered",
                (false, true) => "abandoned",
                (false, false) => "retrying",
            }
            .into();
        }
    }

    pub fn deliveries(&self) -> Vec<SimWebhookDelivery> {
        self.deliveries.values().cloned().collect()
    }

    // ---- authorization ----------------------------------------------------------

    /// Issues an authorization code, as the consent page does when a user approves.
    pub fn authorize(&mut self, a: &SimAuthorize) -> Result<String, ApiError> {
        let Some(app) = self.apps.get(&a.client_id) else {
            return Err(ApiError::control(404, format!("no app {}", a.client_id)));
        };
        if !self.users.contains_key(&a.user_id) {
            return Err(ApiError::control(404, format!("no user {}", a.user_id)));
        }
        if a.redirect_uri.is_empty() {
            return Err(ApiError::control(400, "redirect_uri must not be empty"));
        }
        if let Some(allowed) = &app.redirect_uris {
            if !allowed.contains(&a.redirect_uri) {
                return Err(ApiError::control(
                    400,
                    "redirect_uri is not in the app's redirect_uris",
                ));
            }
        }
        let scopes = a.scopes.clone().unwrap_or_else(|| app.scopes.clone());
        let code = random_alnum(32);
        let expires_at = self.now() + Duration::seconds(self.config.code_ttl_s as i64);
        self.codes.insert(
            code.clone(),
            Code {
                client_id: a.client_id.clone(),
                user_id: a.user_id.clone(),
                redirect_uri: a.redirect_uri.clone(),
                scopes,
                code_challenge: a.code_challenge.clone().filter(|c| !c.is_empty()),
                expires_at,
                used: false,
            },
        );
        Ok(code)
    }

    /// Checks `Authorization: Basic base64(client_id:client_secret)`; returns the client id.
    pub fn authenticate_client(&self, header: Option<&str>) -> Result<String, OAuthError> {
        let missing = || {
            OAuthError::new(
                401,
                "invalid_client",
                "Client ID or client secret is missing.",
            )
        };
        let invalid =
            || OAuthError::new(401, "invalid_client", "Invalid client_id or client_secret");
        let header = header.ok_or_else(missing)?;
        let (scheme, b64) = header.trim().split_once(' ').ok_or_else(missing)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(missing());
        }
        let raw = STANDARD.decode(b64.trim()).map_err(|_| invalid())?;
        let raw = String::from_utf8(raw).map_err(|_| invalid())?;
        let (id, secret) = raw.split_once(':').ok_or_else(invalid)?;
        match self.apps.get(id) {
            Some(app) if constant_time_eq(app.client_secret.as_bytes(), secret.as_bytes()) => {
                Ok(id.to_owned())
            }
            _ => Err(invalid()),
        }
    }

    /// `POST /oauth/token` for an authenticated client. Runs under the world lock, so a
    /// refresh token can be exchanged once, whatever the concurrency.
    pub fn token(
        &mut self,
        client_id: &str,
        form: &HashMap<String, String>,
        api_url: &str,
    ) -> Result<TokenResponse, OAuthError> {
        let param = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let result = match param("grant_type") {
            None => Err(OAuthError::new(
                400,
                "invalid_request",
                "Missing grant type.",
            )),
            Some("authorization_code") => self.exchange_code(
                client_id,
                param("code"),
                param("redirect_uri"),
                param("code_verifier"),
                api_url,
            ),
            Some("refresh_token") => self.refresh(client_id, param("refresh_token"), api_url),
            Some("client_credentials") => Ok(self.client_credentials(client_id, api_url)),
            Some(_) => Err(OAuthError::new(
                400,
                "unsupported_grant_type",
                "Unsupported grant type",
            )),
        };
        if matches!(&result, Err(e) if e.error == "invalid_grant") {
            self.stats.invalid_grant_errors += 1;
        }
        result
    }

    fn exchange_code(
        &mut self,
        client_id: &str,
        code: Option<&str>,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
        api_url: &str,
    ) -> Result<TokenResponse, OAuthError> {
        let code = code.ok_or_else(|| OAuthError::new(400, "invalid_request", "Missing code"))?;
        let now = self.now();
        // Zoom answers an unknown or used code with `invalid_request` and echoes the
        // code in the reason (developer forum, "Invalid authorization code …"), and
        // an expired one with its error 4733 "Code is expired.".
        let invalid_code = || {
            OAuthError::new(
                400,
                "invalid_request",
                format!("Invalid authorization code {code}"),
            )
        };
        let entry = self.codes.get(code).cloned().ok_or_else(invalid_code)?;
        if entry.client_id != client_id || entry.used {
            return Err(invalid_code());
        }
        if now >= entry.expires_at {
            return Err(OAuthError::new(400, "invalid_request", "Code is expired."));
        }
        if redirect_uri != Some(entry.redirect_uri.as_str()) {
            return Err(OAuthError::new(
                400,
                "invalid_request",
                "Redirect URI mismatch.",
            ));
        }
        if let Some(challenge) = &entry.code_challenge {
            let ok = verifier.is_some_and(|v| {
                URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes())) == *challenge
            });
            if !ok {
                return Err(OAuthError::new(
                    400,
                    "invalid_grant",
                    "Invalid code_verifier",
                ));
            }
        }
        if let Some(c) = self.codes.get_mut(code) {
            c.used = true;
        }
        let account_id = self.users.get(&entry.user_id).map(|u| u.account_id.clone());
        let key = (client_id.to_owned(), entry.user_id.clone());
        let grant_id = match self.grant_ids.get(&key).copied() {
            Some(id) if self.grants.get(&id).is_some_and(|g| g.alive) => id,
            _ => {
                let id = self.next_seq();
                self.grant_ids.insert(key, id);
                id
            }
        };
        let previous = self
            .grants
            .get(&grant_id)
            .and_then(|g| g.current_refresh_token.clone());
        if let Some(t) = previous.and_then(|rt| self.tokens.get_mut(&rt)) {
            t.state = TokenState::Superseded;
        }
        let authorization = self
            .grants
            .get(&grant_id)
            .map_or(0, |g| g.authorization + 1);
        self.grants.insert(
            grant_id,
            Grant {
                alive: true,
                scopes: entry.scopes.clone(),
                current_refresh_token: None,
                authorization,
            },
        );
        self.stats.authorization_code_grants += 1;
        Ok(self.mint_pair(
            client_id,
            &entry.user_id,
            account_id,
            grant_id,
            entry.scopes,
            api_url,
        ))
    }

    fn refresh(
        &mut self,
        client_id: &str,
        refresh_token: Option<&str>,
        api_url: &str,
    ) -> Result<TokenResponse, OAuthError> {
        let rt = refresh_token
            .ok_or_else(|| OAuthError::new(400, "invalid_request", "Missing refresh_token"))?;
        let invalid = || OAuthError::new(400, "invalid_grant", "Invalid Token!");
        let now = self.now();
        let token = self.tokens.get(rt).cloned().ok_or_else(invalid)?;
        if token.kind != TokenKind::Refresh || token.client_id != client_id {
            return Err(invalid());
        }
        match token.state {
            TokenState::Live => {}
            TokenState::Rotated => {
                self.stats.stale_refresh_token_uses += 1;
                return Err(invalid());
            }
            TokenState::Superseded => {
                self.stats.superseded_refresh_token_uses += 1;
                return Err(invalid());
            }
            TokenState::Used => return Err(invalid()),
        }
        let grant_id = token.grant.ok_or_else(invalid)?;
        let grant = self.grants.get(&grant_id).cloned().ok_or_else(invalid)?;
        if !grant.alive || now >= token.expires_at {
            return Err(invalid());
        }
        let user_id = token.user_id.clone().ok_or_else(invalid)?;
        if let Some(t) = self.tokens.get_mut(rt) {
            t.state = TokenState::Rotated;
        }
        self.stats.refresh_grants += 1;
        Ok(self.mint_pair(
            client_id,
            &user_id,
            token.account_id,
            grant_id,
            grant.scopes,
            api_url,
        ))
    }

    fn client_credentials(&mut self, client_id: &str, api_url: &str) -> TokenResponse {
        self.stats.client_credentials_grants += 1;
        let ttl = self.config.access_token_ttl_s;
        let access = self.mint(
            TokenKind::Access,
            client_id,
            None,
            None,
            None,
            None,
            Vec::new(),
            ttl as i64,
        );
        TokenResponse {
            access_token: access,
            token_type: "bearer",
            refresh_token: None,
            expires_in: ttl,
            scope: String::new(),
            api_url: api_url.to_owned(),
        }
    }

    fn mint_pair(
        &mut self,
        client_id: &str,
        user_id: &str,
        account_id: Option<String>,
        grant_id: u64,
        scopes: Vec<String>,
        api_url: &str,
    ) -> TokenResponse {
        let ttl = self.config.access_token_ttl_s;
        let rt_ttl = self.config.refresh_token_ttl_s as i64;
        let user = Some(user_id.to_owned());
        let access = self.mint(
            TokenKind::Access,
            client_id,
            user.clone(),
            account_id.clone(),
            Some(grant_id),
            None,
            scopes.clone(),
            ttl as i64,
        );
        let refresh = self.mint(
            TokenKind::Refresh,
            client_id,
            user,
            account_id,
            Some(grant_id),
            None,
            scopes.clone(),
            rt_ttl,
        );
        if let Some(g) = self.grants.get_mut(&grant_id) {
            g.current_refresh_token = Some(refresh.clone());
        }
        TokenResponse {
            access_token: access,
            token_type: "bearer",
            refresh_token: Some(refresh),
            expires_in: ttl,
            scope: scopes.join(" "),
            api_url: api_url.to_owned(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn mint(
        &mut self,
        kind: TokenKind,
        client_id: &str,
        user_id: Option<String>,
        account_id: Option<String>,
        grant: Option<u64>,
        meeting_id: Option<u64>,
        scopes: Vec<String>,
        ttl_s: i64,
    ) -> String {
        let mut id = kind.prefix().to_owned();
        if matches!(kind, TokenKind::Zak | TokenKind::Onbehalf) {
            if let Some(u) = &user_id {
                id.push('_');
                id.push_str(&token_part(u));
            }
        }
        if let Some(m) = meeting_id {
            id.push_str(&format!("_{m}"));
        }
        id.push('_');
        id.push_str(&random_alnum(40));
        let now = self.now();
        if kind == TokenKind::Access && self.config.jwt_access_tokens {
            id = jwt_shaped(&id, user_id.as_deref(), now, now + Duration::seconds(ttl_s));
        }
        let authorization = grant
            .and_then(|g| self.grants.get(&g))
            .map_or(0, |g| g.authorization);
        self.tokens.insert(
            id.clone(),
            Token {
                kind,
                client_id: client_id.to_owned(),
                minted_by: user_id.clone(),
                user_id,
                account_id,
                grant,
                authorization,
                meeting_id,
                scopes,
                issued_at: now,
                expires_at: now + Duration::seconds(ttl_s),
                state: TokenState::Live,
                bypass_waiting_room: None,
            },
        );
        id
    }

    /// `POST /oauth/revoke`: uninstalls the app for the token's user, as Zoom does
    /// (Zoom's developer forum: "the revoke endpoint actually does uninstall the app
    /// and trigger the deauth flow"): every token of that (app, user) dies and
    /// `app_deauthorized` is sent. Returns the webhook to send.
    pub fn revoke(
        &mut self,
        client_id: &str,
        token: Option<&str>,
    ) -> Result<Vec<WebhookJob>, OAuthError> {
        let token =
            token.ok_or_else(|| OAuthError::new(400, "invalid_request", "Missing token"))?;
        let invalid = || OAuthError::new(400, "invalid_request", "Invalid Token!");
        let t = self.tokens.get(token).ok_or_else(invalid)?.clone();
        if t.client_id != client_id || !matches!(t.kind, TokenKind::Access | TokenKind::Refresh) {
            return Err(invalid());
        }
        let now = self.now();
        self.stats.revocations += 1;
        let Some(grant_id) = t.grant else {
            // A client_credentials token has no grant: it dies alone, on the simulated clock.
            if let Some(t) = self.tokens.get_mut(token) {
                t.expires_at = now - Duration::seconds(1);
            }
            return Ok(Vec::new());
        };
        let was_alive = self
            .grants
            .get_mut(&grant_id)
            .map(|g| std::mem::replace(&mut g.alive, false))
            .unwrap_or(false);
        match t.user_id {
            // Revoking a dead grant uninstalls nothing more.
            Some(user_id) if was_alive => Ok(self.deauthorized_webhook(client_id, &user_id)),
            _ => Ok(Vec::new()),
        }
    }

    /// `POST /_sim/users/{id}/deauthorize`: the user removes the app.
    pub fn deauthorize(
        &mut self,
        user_id: &str,
        client_id: &str,
    ) -> Result<Vec<WebhookJob>, ApiError> {
        if !self.users.contains_key(user_id) {
            return Err(ApiError::control(404, format!("no user {user_id}")));
        }
        if !self.apps.contains_key(client_id) {
            return Err(ApiError::control(404, format!("no app {client_id}")));
        }
        let key = (client_id.to_owned(), user_id.to_owned());
        let alive = self
            .grant_ids
            .get(&key)
            .and_then(|id| self.grants.get_mut(id))
            .filter(|g| g.alive);
        let Some(grant) = alive else {
            return Err(ApiError::control(
                404,
                format!("user {user_id} has not authorized app {client_id}"),
            ));
        };
        grant.alive = false;
        Ok(self.deauthorized_webhook(client_id, user_id))
    }

    /// The `app_deauthorized` event for a grant that just died, when the app has a
    /// webhook endpoint.
    fn deauthorized_webhook(&mut self, client_id: &str, user_id: &str) -> Vec<WebhookJob> {
        let (Some(user), Some(app)) = (
            self.users.get(user_id).cloned(),
            self.apps.get(client_id).cloned(),
        ) else {
            return Vec::new();
        };
        let Some(url) = app.webhook_url.clone() else {
            return Vec::new();
        };
        let stopped = app.events_stopped_at.is_some();
        let now = self.now();
        let deauthorization_time = now.to_rfc3339_opts(SecondsFormat::Millis, true);
        // Zoom's legacy compliance field; computed here so it is stable and checkable.
        let signature = hmac_hex(
            &app.client_secret,
            &format!(
                "{client_id}{user_id}{}{deauthorization_time}",
                user.account_id
            ),
        );
        // Zoom's fields (a Zoom data-compliance example: `user_data_retention` as the
        // string "false"; zoom/rivet-javascript `AppDeauthorizedEvent`), with
        // `event_ts` both at the top level (every event) and in the payload.
        let payload = json!({
            "account_id": user.account_id,
            "user_id": user.id,
            "client_id": client_id,
            "user_data_retention": "false",
            "deauthorization_time": deauthorization_time,
            "signature": signature,
            "event_ts": now.timestamp_millis(),
        });
        // One forum report says an `app_deauthorized` did not verify with the
        // documented `x-zm-signature` scheme; this fault signs it with another key.
        let secret = if self.faults.unverifiable_deauthorizations == Some(true) {
            app.client_secret.clone()
        } else {
            app.webhook_secret.clone()
        };
        if stopped {
            self.withhold_webhook("app_deauthorized", payload, client_id, &url);
            return Vec::new();
        }
        vec![self.queue_webhook("app_deauthorized", payload, client_id, &url, &secret)]
    }

    pub fn token_info(&self, token: &str) -> Option<SimTokenInfo> {
        let t = self.tokens.get(token)?;
        let grant_alive = t
            .grant
            .is_none_or(|g| self.grants.get(&g).is_some_and(|g| g.alive));
        let status = if !grant_alive {
            "revoked"
        } else if t.state == TokenState::Rotated {
            "rotated"
        } else if t.state == TokenState::Used {
            "used"
        } else if t.state == TokenState::Superseded
            || t.grant.and_then(|g| self.grants.get(&g)).is_some_and(|g| {
                g.authorization != t.authorization
                    && matches!(t.kind, TokenKind::Access | TokenKind::Refresh)
            })
        {
            "superseded"
        } else if self.now() >= t.expires_at {
            "expired"
        } else {
            "active"
        };
        Some(SimTokenInfo {
            token_type: t.kind.as_str().into(),
            user_id: t.user_id.clone(),
            account_id: t.account_id.clone(),
            meeting_id: t.meeting_id,
            client_id: t.client_id.clone(),
            issued_at: Some(t.issued_at),
            expires_at: Some(t.expires_at),
            scopes: t.scopes.clone(),
            status: status.into(),
            bypass_waiting_room: t.bypass_waiting_room,
            minted_by: t.minted_by.clone(),
        })
    }

    // ---- REST ------------------------------------------------------------------------

    /// The Zoom account of a valid bearer token, for per-account rate limiting.
    pub fn account_of_bearer(&self, header: Option<&str>) -> Option<String> {
        let token = header?.strip_prefix("Bearer ")?.trim();
        let t = self.tokens.get(token)?;
        t.account_id
            .clone()
            .or_else(|| Some(format!("app:{}", t.client_id)))
    }

    pub fn authenticate_bearer(&self, header: Option<&str>) -> Result<Caller, ApiError> {
        let invalid = || ApiError::new(401, 124, "Invalid access token.");
        let header = header.map(str::trim).filter(|h| !h.is_empty());
        let Some(header) = header else {
            return Err(ApiError::new(401, 4700, "Token cannot be empty."));
        };
        let (scheme, token) = header.split_once(' ').ok_or_else(invalid)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(invalid());
        }
        let t = self.tokens.get(token.trim()).ok_or_else(invalid)?;
        if t.kind != TokenKind::Access {
            return Err(invalid());
        }
        if let Some(g) = t.grant {
            let Some(grant) = self.grants.get(&g).filter(|g| g.alive) else {
                return Err(invalid());
            };
            if grant.authorization != t.authorization {
                return Err(ApiError::new(
                    401,
                    4741,
                    "Access token has been revoked by a newer authorization.",
                ));
            }
        }
        if self.now() >= t.expires_at {
            return Err(ApiError::new(401, 124, "Access token is expired."));
        }
        Ok(Caller {
            client_id: t.client_id.clone(),
            user_id: t.user_id.clone(),
            scopes: t.scopes.clone(),
        })
    }

    /// The user behind the token, whatever their status (for `/users/me`).
    fn caller_user(&self, caller: &Caller, any_of: &[&str]) -> Result<&User, ApiError> {
        if !scopes_satisfy(&caller.scopes, any_of) {
            return Err(missing_scopes(any_of));
        }
        let Some(uid) = &caller.user_id else {
            // An app-only (client_credentials) token has no user to act for.
            return Err(ApiError::new(400, 1001, "User does not exist: me."));
        };
        self.users
            .get(uid)
            .ok_or_else(|| ApiError::new(404, 1001, format!("User does not exist: {uid}.")))
    }

    /// Like `caller_user`, but a user who is not active is refused.
    fn active_caller(&self, caller: &Caller, any_of: &[&str]) -> Result<&User, ApiError> {
        let user = self.caller_user(caller, any_of)?;
        if user.status != SimUserStatus::Active {
            return Err(inactive_user(user));
        }
        Ok(user)
    }

    /// Whether the caller may act for the other users of their account, as Zoom decides
    /// it: the grant holds one of the endpoint's admin scopes (`admin_scopes`; missing →
    /// 400 code 4711 naming them), and its user is the account's owner or an admin (not →
    /// 400 code 200 "No permission."). Zoom offers admin scopes to admin-managed apps
    /// only; here that is an `account_level` app, and a user-level app is refused like a
    /// member.
    fn check_account_admin(
        &self,
        caller: &Caller,
        me: &User,
        admin_scopes: &[&str],
    ) -> Result<(), ApiError> {
        if !scopes_satisfy(&caller.scopes, admin_scopes) {
            return Err(missing_scopes(admin_scopes));
        }
        let account_level = self
            .apps
            .get(&caller.client_id)
            .is_some_and(|a| a.kind == SimAppKind::AccountLevel);
        if !account_level || !me.is_admin() {
            return Err(ApiError::new(400, 200, "No permission."));
        }
        Ok(())
    }

    /// The user a `/users/{userId}/…` path names (`me`, the caller's id or email, or
    /// another user's id or email). Another user needs [`Self::check_account_admin`] and
    /// must belong to the caller's account; an unknown user, or one of another account,
    /// is 404 code 1001 "User does not exist: {userId}." (Zoom does not tell an admin
    /// about other accounts' users).
    fn path_user<'a>(
        &'a self,
        caller: &Caller,
        me: &'a User,
        user_ref: &str,
        admin_scopes: &[&str],
    ) -> Result<&'a User, ApiError> {
        if user_ref == "me" || user_ref == me.id || user_ref.eq_ignore_ascii_case(&me.email) {
            return Ok(me);
        }
        let not_found = || ApiError::new(404, 1001, format!("User does not exist: {user_ref}."));
        let other = self
            .users
            .get(user_ref)
            .or_else(|| {
                self.users
                    .values()
                    .find(|u| u.email.eq_ignore_ascii_case(user_ref))
            })
            .ok_or_else(not_found)?;
        self.check_account_admin(caller, me, admin_scopes)?;
        if other.account_id != me.account_id {
            return Err(not_found());
        }
        Ok(other)
    }

    /// `GET /users` ("List users", developers.zoom.us/docs/api/users/#tag/users/GET/users):
    /// the caller's account's users, only to its owner or an admin through an admin grant
    /// ([`SCOPES_LIST_USERS`]). `status` is `active` (default), `inactive` or `pending`;
    /// `role_id` filters by role (`0` owner, `1` admin, `2` member); `page_size` defaults
    /// to 30 and is capped at 300 (Zoom's pagination guide: "Up to 300 items per page";
    /// devforum.zoom.us/t/68825: "larger page sizes up to 300 results"); `page_number`
    /// (from 1) or `next_page_token` (15 minutes) pick the page. An answer to a
    /// `next_page_token` carries no `page_count`/`page_number`, as in Zoom's own
    /// example (devforum.zoom.us/t/68825, "Handling paginated responses").
    pub fn list_users(
        &mut self,
        caller: &Caller,
        status: Option<&str>,
        role_id: Option<&str>,
        page_size: Option<&str>,
        page_number: Option<&str>,
        next_page_token: Option<&str>,
    ) -> Result<Value, ApiError> {
        let account = {
            let me = self.active_caller(caller, SCOPES_LIST_USERS)?;
            self.check_account_admin(caller, me, SCOPES_LIST_USERS)?;
            me.account_id.clone()
        };
        let expired = || ApiError::new(400, 300, "The next page token is invalid or expired.");
        if next_page_token.is_some() {
            if let Some(n) = self.faults.expire_next_page_tokens.filter(|n| *n > 0) {
                self.faults.expire_next_page_tokens = Some(n - 1);
                return Err(expired());
            }
        }
        let status_name = status.unwrap_or("active");
        let status = match status_name {
            "active" => SimUserStatus::Active,
            "inactive" => SimUserStatus::Inactive,
            "pending" => SimUserStatus::Pending,
            other => {
                return Err(ApiError::new(
                    400,
                    300,
                    format!("Invalid field: status={other}."),
                ))
            }
        };
        let page_size: usize = match page_size {
            None => 30,
            Some(s) => s
                .parse::<usize>()
                .map_err(|_| ApiError::new(400, 300, "Invalid field: page_size."))?
                .clamp(1, MAX_USERS_PAGE_SIZE),
        };
        let mut users: Vec<&User> = self
            .users
            .values()
            .filter(|u| {
                u.account_id == account
                    && u.status == status
                    && role_id.is_none_or(|r| u.role().1 == r)
            })
            .collect();
        users.sort_by_key(|u| u.seq);
        let scope = format!(
            "users-{status_name}-{}",
            role_id.map(token_part).unwrap_or_default()
        );
        let token_owner = format!("account/{account}");
        let now = self.now();
        let (offset, page) = match (next_page_token, page_number) {
            (Some(t), _) => {
                let (offset, issued) =
                    decode_page_token(t, &token_owner, &scope).ok_or_else(expired)?;
                if now.timestamp() - issued > PAGE_TOKEN_TTL_S {
                    return Err(expired());
                }
                (offset, None)
            }
            (None, n) => {
                let n = match n {
                    None => 1,
                    Some(n) => n
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| ApiError::new(400, 300, "Invalid field: page_number."))?,
                };
                (n.saturating_sub(1).saturating_mul(page_size), Some(n))
            }
        };
        let total = users.len();
        let listed: Vec<Value> = users
            .iter()
            .skip(offset)
            .take(page_size)
            .map(|u| u.list_object())
            .collect();
        let next = offset + listed.len();
        let next_token = if next < total {
            encode_page_token(&token_owner, &scope, next, now.timestamp())
        } else {
            String::new()
        };
        let mut answer = json!({
            "page_size": page_size,
            "total_records": total,
            "next_page_token": next_token,
            "users": listed,
        });
        if let Some(n) = page {
            answer["page_count"] = json!(total.div_ceil(page_size));
            answer["page_number"] = json!(n);
        }
        Ok(answer)
    }

    pub fn users_me(&self, caller: &Caller) -> Result<Value, ApiError> {
        let u = self.caller_user(caller, SCOPES_USERS_ME)?;
        let (role_name, role_id) = u.role();
        let status = u.status_str();
        Ok(json!({
            "id": u.id,
            "first_name": u.first_name,
            "last_name": u.last_name,
            "display_name": format!("{} {}", u.first_name, u.last_name),
            "email": u.email,
            "type": 2,
            "role_name": role_name,
            "role_id": role_id,
            "pmi": u.pmi,
            "use_pmi": false,
            "personal_meeting_url": u.personal_meeting_url(),
            "timezone": u.timezone,
            "verified": 1,
            "dept": "",
            "created_at": rfc3339(u.created_at),
            "user_created_at": rfc3339(u.created_at),
            "last_login_time": rfc3339(u.created_at),
            "language": "en-US",
            "phone_number": "",
            "status": status,
            "account_id": u.account_id,
            "account_number": 0,
            "cluster": "us05",
        }))
    }

    pub fn list_meetings(
        &mut self,
        caller: &Caller,
        user_ref: &str,
        list_type: Option<&str>,
        page_size: Option<&str>,
        next_page_token: Option<&str>,
    ) -> Result<Value, ApiError> {
        let expired = || ApiError::new(400, 300, "The next page token is invalid or expired.");
        if next_page_token.is_some() && self.active_caller(caller, SCOPES_LIST_MEETINGS).is_ok() {
            if let Some(n) = self.faults.expire_next_page_tokens.filter(|n| *n > 0) {
                self.faults.expire_next_page_tokens = Some(n - 1);
                return Err(expired());
            }
        }
        let me = self.active_caller(caller, SCOPES_LIST_MEETINGS)?;
        // Another user's meetings: "List meetings" with `meeting:read:list_meetings:admin`
        // (classic `meeting:read:admin`), by the account's owner or an admin.
        let target = self.path_user(caller, me, user_ref, SCOPES_LIST_MEETINGS_ADMIN)?;
        let list_type = list_type.unwrap_or("scheduled");
        let now = self.now();
        let ends = |m: &Meeting| {
            m.start_time
                .and_then(|s| s.checked_add_signed(Duration::minutes(i64::from(m.duration))))
        };
        let selected = |m: &Meeting| -> bool {
            match list_type {
                // "All valid previous (unexpired) meetings, live meetings, and
                // upcoming scheduled meetings" (Zoom's Meeting API, List meetings).
                "scheduled" => !m.expired(now),
                "upcoming" | "upcoming_meetings" => ends(m).is_none_or(|e| e >= now),
                "live" => {
                    m.start_time.is_some_and(|s| s <= now) && ends(m).is_some_and(|e| e >= now)
                }
                "previous_meetings" => ends(m).is_some_and(|e| e < now),
                _ => false,
            }
        };
        if ![
            "scheduled",
            "upcoming",
            "upcoming_meetings",
            "live",
            "previous_meetings",
        ]
        .contains(&list_type)
        {
            return Err(ApiError::new(
                400,
                300,
                format!("Invalid field: type={list_type}."),
            ));
        }
        let page_size: usize = match page_size {
            None => 30,
            Some(s) => s
                .parse::<usize>()
                .map_err(|_| ApiError::new(400, 300, "Invalid field: page_size."))?
                .clamp(1, 300),
        };
        let mut meetings: Vec<&Meeting> = self
            .meetings
            .values()
            .filter(|m| m.host_id == target.id && selected(m))
            .collect();
        meetings.sort_by_key(|m| (m.start_time, m.id));
        let offset = match next_page_token {
            None => 0,
            Some(t) => {
                let (offset, issued) =
                    decode_page_token(t, &target.id, list_type).ok_or_else(expired)?;
                if now.timestamp() - issued > PAGE_TOKEN_TTL_S {
                    return Err(expired());
                }
                offset
            }
        };
        let total = meetings.len();
        let page: Vec<Value> = meetings
            .iter()
            .skip(offset)
            .take(page_size)
            .map(|m| m.object())
            .collect();
        let next = offset + page.len();
        let next_token = if next < total {
            encode_page_token(&target.id, list_type, next, now.timestamp())
        } else {
            String::new()
        };
        Ok(json!({
            "page_size": page_size,
            "total_records": total,
            "next_page_token": next_token,
            "meetings": page,
        }))
    }

    /// `GET /meetings/{id}/jointoken/local_recording`.
    pub fn local_recording_token(
        &mut self,
        caller: &Caller,
        meeting_ref: &str,
        bypass_waiting_room: bool,
    ) -> Result<Value, ApiError> {
        let me = self.active_caller(caller, SCOPES_LOCAL_RECORDING)?.clone();
        let not_found =
            || ApiError::new(404, 3001, format!("Meeting does not exist: {meeting_ref}."));
        let meeting_id: u64 = meeting_ref.trim().parse().map_err(|_| not_found())?;
        let host_id = match self.meetings.get(&meeting_id) {
            Some(m) => m.host_id.clone(),
            None => self.pmis.get(&meeting_id).cloned().ok_or_else(not_found)?,
        };
        // Another host's meeting: "Get a meeting's join token for local recording" with
        // `meeting:read:local_recording_token:admin` (classic
        // `meeting_token:read:admin:local_recording`), by the owner or an admin of the
        // host's account. Anyone else gets Zoom's 3000.
        let allowed = host_id == me.id || {
            let same_account = self
                .users
                .get(&host_id)
                .is_some_and(|h| h.account_id == me.account_id);
            same_account
                && self
                    .check_account_admin(caller, &me, SCOPES_LOCAL_RECORDING_ADMIN)
                    .is_ok()
        };
        if !allowed {
            return Err(ApiError::new(400, 3000, "Cannot access meeting info."));
        }
        // Zoom refuses the token while the host's "Local recording" setting is off.
        if self.users.get(&host_id).is_some_and(|h| !h.local_recording) {
            return Err(ApiError::new(
                400,
                3000,
                "Not allowed to start local recording",
            ));
        }
        let token = self.mint(
            TokenKind::LocalRecording,
            &caller.client_id,
            Some(me.id.clone()),
            Some(me.account_id.clone()),
            None,
            Some(meeting_id),
            Vec::new(),
            LOCAL_RECORDING_TOKEN_TTL_S,
        );
        if let Some(t) = self.tokens.get_mut(&token) {
            t.bypass_waiting_room = Some(bypass_waiting_room);
        }
        Ok(json!({"token": token, "expire_in": LOCAL_RECORDING_TOKEN_TTL_S}))
    }

    /// `GET /users/{userId}/token?type=zak|onbehalf[&meeting_id=][&ttl=]` ("Get a user's
    /// token", developers.zoom.us/docs/api/users/#tag/users/GET/users/{userId}/token):
    /// needs `user:read:token` or classic `user:read` ([`SCOPES_USER_TOKEN`]), and for a
    /// user other than the caller an admin scope ([`SCOPES_USER_TOKEN_ADMIN`]) held by the
    /// owner or an admin of that user's account; the ZAK scopes do not open it. A ZAK lives `ttl` seconds (default two hours,
    /// at most a year); an onbehalf token lives two hours, is bound to `meeting_id`
    /// when one is given, and works for one join.
    pub fn user_token(
        &mut self,
        caller: &Caller,
        user_ref: &str,
        token_type: Option<&str>,
        meeting_id: Option<&str>,
        ttl: Option<&str>,
    ) -> Result<Value, ApiError> {
        let kind = match token_type {
            Some("zak") => TokenKind::Zak,
            Some("onbehalf") => TokenKind::Onbehalf,
            Some(other) => {
                return Err(ApiError::new(
                    400,
                    300,
                    format!("Invalid field: type={other}."),
                ))
            }
            None => return Err(ApiError::new(400, 300, "Invalid field: type.")),
        };
        let me = self.active_caller(caller, SCOPES_USER_TOKEN)?;
        // Another user's token: `user:read:token:admin` (classic `user:read:admin`), by the
        // owner or an admin of that user's account; the user must be active.
        let target = self
            .path_user(caller, me, user_ref, SCOPES_USER_TOKEN_ADMIN)?
            .clone();
        let minted_by = me.id.clone();
        if target.status != SimUserStatus::Active {
            return Err(inactive_user(&target));
        }
        let meeting = match (kind, meeting_id.filter(|m| !m.is_empty())) {
            (TokenKind::Onbehalf, Some(m)) => Some(
                m.trim()
                    .parse::<u64>()
                    .map_err(|_| ApiError::new(400, 300, "Invalid field: meeting_id."))?,
            ),
            _ => None,
        };
        let ttl_s = match (kind, ttl.filter(|t| !t.is_empty())) {
            (TokenKind::Zak, Some(t)) => t
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|t| (1..=MAX_USER_TOKEN_TTL_S).contains(t))
                .ok_or_else(|| ApiError::new(400, 300, "Invalid field: ttl."))?,
            _ => USER_TOKEN_TTL_S,
        };
        let token = self.mint(
            kind,
            &caller.client_id,
            Some(target.id.clone()),
            Some(target.account_id.clone()),
            None,
            meeting,
            Vec::new(),
            ttl_s,
        );
        if let Some(t) = self.tokens.get_mut(&token) {
            t.minted_by = Some(minted_by);
        }
        Ok(json!({"token": token}))
    }

    /// `GET /users/me/zak` ("Get the user's ZAK"): needs `user:read:zak` or classic
    /// `user_zak:read` ([`SCOPES_ZAK`]); the ZAK expires five minutes after receipt.
    pub fn me_zak(&mut self, caller: &Caller) -> Result<Value, ApiError> {
        let me = self.active_caller(caller, SCOPES_ZAK)?.clone();
        let token = self.mint(
            TokenKind::Zak,
            &caller.client_id,
            Some(me.id.clone()),
            Some(me.account_id.clone()),
            None,
            None,
            Vec::new(),
            ME_ZAK_TTL_S,
        );
        Ok(json!({"token": token}))
    }

    /// `POST /_sim/tokens/{token}/join`: what a bot joining `meeting_id` with an
    /// onbehalf token does. The token works once, only for the meeting it was minted
    /// for (when it was bound to one), and only while it lives.
    pub fn join_with_onbehalf(&mut self, token: &str, meeting_id: u64) -> Result<(), ApiError> {
        let now = self.now();
        let Some(t) = self.tokens.get(token).cloned() else {
            return Err(ApiError::control(
                404,
                "the simulator did not issue this token",
            ));
        };
        if t.kind != TokenKind::Onbehalf {
            return Err(ApiError::control(400, "not an onbehalf token"));
        }
        let grant_alive = t
            .grant
            .is_none_or(|g| self.grants.get(&g).is_some_and(|g| g.alive));
        if !grant_alive || now >= t.expires_at {
            return Err(ApiError::control(401, "the onbehalf token has expired"));
        }
        if t.state == TokenState::Used {
            return Err(ApiError::control(
                409,
                "the onbehalf token was already used",
            ));
        }
        if t.meeting_id.is_some_and(|m| m != meeting_id) {
            return Err(ApiError::control(
                403,
                "the onbehalf token is bound to another meeting",
            ));
        }
        if let Some(t) = self.tokens.get_mut(token) {
            t.state = TokenState::Used;
        }
        Ok(())
    }

    // ---- faults -----------------------------------------------------------------------

    /// Counts a request against its account's per-second window; true when over the limit.
    pub fn over_rate_limit(&mut self, account: &str, limit: u32) -> bool {
        let second = self.now().timestamp();
        let w = self.rate_windows.entry(account.to_owned()).or_default();
        if w.second != second {
            *w = RateWindow { second, count: 0 };
        }
        w.count += 1;
        w.count > limit
    }

    /// Counts a request against its account's daily budget (UTC days on the
    /// simulated clock); true when over the limit.
    pub fn over_daily_limit(&mut self, account: &str, limit: u32) -> bool {
        let today = self.now().date_naive();
        let w = self
            .daily_windows
            .entry(account.to_owned())
            .or_insert((today, 0));
        if w.0 != today {
            *w = (today, 0);
        }
        w.1 = w.1.saturating_add(1);
        w.1 > limit
    }
}

fn inactive_user(u: &User) -> ApiError {
    // Zoom answers a deactivated user with "User does not exist"; we keep the id in it.
    ApiError::new(400, 1001, format!("User does not exist: {}.", u.id))
}

/// Zoom's Meeting API: "The expiration period for this token is 15 minutes."
const PAGE_TOKEN_TTL_S: i64 = 15 * 60;
/// The largest `page_size` of "List users" (see [`World::list_users`]).
pub const MAX_USERS_PAGE_SIZE: usize = 300;

fn status_str(s: SimUserStatus) -> &'static str {
    match s {
        SimUserStatus::Active => "active",
        SimUserStatus::Inactive => "inactive",
        SimUserStatus::Pending => "pending",
    }
}

fn encode_page_token(user_id: &str, list_type: &str, offset: usize, issued: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{offset}:{issued}:{list_type}:{user_id}"))
}

/// The offset and issue time (simulated clock, seconds) of a page token.
fn decode_page_token(token: &str, user_id: &str, list_type: &str) -> Option<(usize, i64)> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token.trim()).ok()?).ok()?;
    let mut parts = raw.splitn(4, ':');
    let offset = parts.next()?.parse().ok()?;
    let issued = parts.next()?.parse().ok()?;
    (parts.next()? == list_type && parts.next()? == user_id).then_some((offset, issued))
}

pub fn hmac_hex(secret: &str, message: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(), // HMAC accepts keys of any length
    };
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
