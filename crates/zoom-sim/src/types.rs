//! The control API's request and response bodies (`/_sim/*`), shared by the server
//! and by [`crate::SimControl`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

/// Who an app is installed for. Account-level apps may mint local recording tokens for
/// any meeting of the account when the caller is an admin or owner of that account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimAppKind {
    #[default]
    UserLevel,
    AccountLevel,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimUserStatus {
    #[default]
    Active,
    Inactive,
    Pending,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimUserRole {
    Owner,
    Admin,
    #[default]
    Member,
}

/// `POST /_sim/apps` — creates the app, or updates it when the client_id exists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimApp {
    pub client_id: String,
    pub client_secret: String,
    /// The Event Subscription "secret token". Generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<SimAppKind>,
    /// Scopes granted when a user approves on the `/oauth/authorize` page (default: all
    /// granular scopes zoomkeeper uses).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "scopes_opt"
    )]
    pub scopes: Option<Vec<String>>,
    /// When set, `/oauth/authorize` refuses any other redirect_uri (Zoom's allow list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uris: Option<Vec<String>>,
}

/// `PATCH /_sim/apps/{client_id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimAppPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<SimAppKind>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "scopes_opt"
    )]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uris: Option<Vec<String>>,
    /// `true`: Zoom support resumes the app's stopped events ("To reset the retry
    /// count, please submit a ticket").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_events: Option<bool>,
}

/// `GET /_sim/apps/{client_id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimAppInfo {
    pub client_id: String,
    pub client_secret: String,
    pub webhook_secret: String,
    pub webhook_url: Option<String>,
    pub kind: SimAppKind,
    pub scopes: Vec<String>,
    pub redirect_uris: Option<Vec<String>>,
    /// Outcome of the last `endpoint.url_validation` sent to this app, if any.
    pub url_validated: Option<bool>,
    /// When Zoom stopped sending this app's events (an event's last retry failed,
    /// or a revalidation failed); `None` while events flow.
    #[serde(default)]
    pub events_stopped_at: Option<String>,
}

/// `POST /_sim/users`. Everything is generated when left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimUser {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pmi: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SimUserStatus>,
    /// Default: `owner` for the first user of an account, `member` after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<SimUserRole>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The user's "Local recording" setting (default on). Off, Zoom refuses the
    /// local recording token of the user's meetings: 400 code 3000 "Not allowed to
    /// start local recording".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_recording: Option<bool>,
}

/// Answer of `POST /_sim/users` (and an element of `GET /_sim/users`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimUserCreated {
    pub id: String,
    pub account_id: String,
    pub email: String,
    pub pmi: u64,
    pub personal_meeting_url: String,
    pub status: SimUserStatus,
    pub role: SimUserRole,
}

/// `PATCH /_sim/users/{id}`. A PMI change sends `user.updated`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimUserPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pmi: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SimUserStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<SimUserRole>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Turns the user's "Local recording" setting on or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_recording: Option<bool>,
}

/// `POST /_sim/authorize` — what the consent page does, without a browser.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimAuthorize {
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    /// A list or one space-separated string. Default: the app's scopes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "scopes_opt"
    )]
    pub scopes: Option<Vec<String>>,
    /// S256 challenge (base64url, no padding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimAuthorizeCode {
    pub code: String,
}

/// `POST /_sim/users/{id}/meetings`. Sends `meeting.created`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimMeeting {
    /// A specific meeting number (9–11 digits, unused); generated (10–11 digits) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Default: one hour from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    /// Zoom meeting type: 1 instant, 2 scheduled (default), 3 recurring no fixed time,
    /// 8 recurring fixed time.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub meeting_type: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimMeetingCreated {
    pub id: u64,
    pub uuid: String,
    pub host_id: String,
    pub join_url: String,
}

/// `POST /_sim/accounts`: an account with an admin and `members` members, each user
/// (the admin too) with `meetings_per_user` scheduled meetings (type 2, one hour, the
/// k-th starting k days from now), in one call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimAccount {
    /// Generated when absent; an existing account gets the new users added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The admin, as `POST /_sim/users` takes it; `role` defaults to `admin` (`owner`
    /// allowed, `member` refused) and `account_id`, when given, must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<SimUser>,
    /// Members (role `member`, active, everything generated), at most 20,000.
    #[serde(default)]
    pub members: u32,
    /// At most 200,000 meetings in all: (members + 1) × meetings_per_user.
    #[serde(default)]
    pub meetings_per_user: u32,
    /// Send `meeting.created` for every meeting. Default false: none is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_webhooks: Option<bool>,
}

/// Answer of `POST /_sim/accounts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimAccountCreated {
    pub account_id: String,
    pub admin_id: String,
    /// The members, in creation order (the order of `GET /v2/users`); not the admin.
    pub user_ids: Vec<String>,
    /// Every new user's meeting numbers (the admin's included), by user id, earliest
    /// first.
    pub meeting_ids: BTreeMap<String, Vec<u64>>,
}

/// `POST /_sim/users/{id}/deauthorize`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimDeauthorize {
    pub client_id: String,
}

/// `PUT /_sim/config` — only the fields given change; `GET /_sim/config` shows all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Lifetime of access tokens (`expires_in`), default 3599.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_ttl_s: Option<u64>,
    /// Lifetime of authorization codes, default 300. 0 makes every code expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_ttl_s: Option<u64>,
    /// Lifetime of an unused refresh token, default 90 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_ttl_s: Option<u64>,
    /// Multiplies Zoom's webhook retry delays (5, 20, 60 minutes). Default 1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_retry_scale: Option<f64>,
    /// How long a webhook receiver may take to answer, default 3000 (Zoom's 3 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_timeout_ms: Option<u64>,
    /// Shifts the simulator's clock (token and code expiry, timestamps), default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_offset_s: Option<i64>,
    /// Issue access tokens shaped like Zoom's real ones: JWTs whose payload carries
    /// `exp` (Unix seconds, on the simulator's clock), `iat` and `uid`. Default false
    /// (opaque `zsim_at_…` tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_access_tokens: Option<bool>,
}

/// `PUT /_sim/faults` — replaces the whole fault set; all `None` clears it.
/// Faults apply to `/oauth/*` and `/v2/*`, never to `/_sim/*`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimFaults {
    /// Added before every answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Share (0..1) of requests answered with `status_code`, or randomly 500/503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// The status of injected errors; alone (without `error_rate`) it fails every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Requests per second per Zoom account on `/v2` (429 beyond it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_s: Option<u32>,
    /// Send `Retry-After` as an HTTP date (Zoom's daily limit) instead of seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_http_date: Option<bool>,
    /// Per-second limit per Zoom account for Light endpoints (`/users/me`, the token
    /// endpoints, the local recording token); overrides `rate_limit_per_s` for them.
    /// [`SimFaults::zoom_pro`] sets Zoom's Pro limits for all three categories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_light_per_s: Option<u32>,
    /// Per-second limit per Zoom account for Medium endpoints (`GET /users` and the
    /// meeting lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_medium_per_s: Option<u32>,
    /// Per-second limit per Zoom account for Heavy endpoints (none that zoomkeeper
    /// calls; reports and dashboards at Zoom).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_heavy_per_s: Option<u32>,
    /// Requests per Zoom account per day (UTC, on the simulated clock) on `/v2`;
    /// beyond it a 429 with `X-RateLimit-Type: Daily-limit` until 00:00 GMT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_limit: Option<u32>,
    /// How a 429 states `Retry-After`. Default: seconds for per-second limits, an
    /// ISO 8601 date for the daily limit (Zoom's documented example).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<SimRetryAfter>,
    /// The next N page tokens presented to the meeting lists or to `GET /users` are
    /// refused as expired (as though their 15 minutes had passed); counts down as they
    /// are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_next_page_tokens: Option<u32>,
    /// `app_deauthorized` is signed with the app's client secret instead of its
    /// webhook secret token, so it does not verify with the documented scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unverifiable_deauthorizations: Option<bool>,
    /// Share (0..1) of requests whose connection is closed without an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_connection_rate: Option<f64>,
    /// Share (0..1) of requests that never get an answer (the simulator waits an hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_rate: Option<f64>,
    /// The next N requests (of those `paths` selects) fail with `status_code` (default
    /// 503), then requests pass again; counts down as they fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_next: Option<u32>,
    /// Only requests whose path starts with one of these are faulted (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
}

impl SimFaults {
    /// Zoom's per-second limits for a Pro account, per account and per category:
    /// Light 30/s, Medium 20/s, Heavy 10/s (developers.zoom.us/docs/commerce/rate-limits/,
    /// "Rate limits by account type"). Pro has no daily limit on Light or Medium
    /// endpoints (its 30,000/day is shared by Heavy and Resource-intensive ones, which
    /// the simulator does not serve), so `daily_limit` stays unset. Nothing else is
    /// faulted. Not the default: a simulator starts with no limits at all.
    pub fn zoom_pro() -> SimFaults {
        SimFaults {
            rate_limit_light_per_s: Some(30),
            rate_limit_medium_per_s: Some(20),
            rate_limit_heavy_per_s: Some(10),
            ..SimFaults::default()
        }
    }

    /// Zoom's per-second limits for Business, Education, Enterprise and Partner
    /// accounts ("Business+"): Light 80/s, Medium 60/s, Heavy 40/s (same page).
    pub fn zoom_business() -> SimFaults {
        SimFaults {
            rate_limit_light_per_s: Some(80),
            rate_limit_medium_per_s: Some(60),
            rate_limit_heavy_per_s: Some(40),
            ..SimFaults::default()
        }
    }
}

/// The forms of `Retry-After` Zoom has been seen to send on a 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimRetryAfter {
    /// Delta-seconds, e.g. `1` (per-second limits).
    Seconds,
    /// An ISO 8601 date, e.g. `2020-05-31T00:00:00Z` (Zoom's rate-limit docs).
    Iso8601,
    /// An HTTP date, e.g. `Sun, 31 May 2020 00:00:00 GMT`.
    HttpDate,
    /// No `Retry-After` at all (seen on daily-limit 429s, devforum.zoom.us/t/18928).
    None,
}

/// `GET /_sim/tokens/{token}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimTokenInfo {
    /// `access_token` | `refresh_token` | `zak` | `onbehalf` | `local_recording`.
    #[serde(rename = "type")]
    pub token_type: String,
    pub user_id: Option<String>,
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_id: Option<u64>,
    pub client_id: String,
    pub issued_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
    /// `active` | `expired` | `rotated` (a refresh token that was used) | `superseded`
    /// (a refresh token replaced by a new authorization) | `used` (an onbehalf token
    /// a bot has joined with: it works once) | `revoked`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bypass_waiting_room: Option<bool>,
    /// The user whose grant minted the token: `user_id` itself, except for a ZAK or
    /// onbehalf token an account admin minted for another user of the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minted_by: Option<String>,
}

/// `POST /_sim/tokens/{token}/join`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimJoin {
    pub meeting_id: u64,
}

/// `GET /_sim/stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimStats {
    pub authorization_code_grants: u64,
    pub refresh_grants: u64,
    pub client_credentials_grants: u64,
    /// Refresh attempts with a refresh token that had already been used (rotated
    /// away): the client lost track of its own rotation. The number that must stay 0.
    pub stale_refresh_token_uses: u64,
    /// Refresh attempts with a refresh token replaced by a newer authorization of the
    /// same user (a refresh racing the user's re-authorisation, or a client that kept
    /// an older grant than the newest).
    #[serde(default)]
    pub superseded_refresh_token_uses: u64,
    /// Token requests refused with `invalid_grant` (stale uses included).
    pub invalid_grant_errors: u64,
    pub revocations: u64,
    /// Requests to `/oauth/*` and `/v2/*`, faulted ones included.
    pub api_calls: u64,
    /// Per endpoint, keyed `"GET /v2/users/me"` (route templates, e.g. `{meeting_id}`).
    pub api_calls_by_endpoint: BTreeMap<String, u64>,
    pub rate_limited: u64,
    /// Faults injected other than rate limiting (errors, drops, hangs).
    pub faults_injected: u64,
    /// Webhook HTTP attempts made (retries included).
    pub webhooks_sent: u64,
    /// Attempts that did not get a 200/204 within the timeout.
    pub webhooks_failed: u64,
    /// Events acknowledged by the receiver.
    pub webhooks_delivered: u64,
    /// Events abandoned after the last retry.
    pub webhooks_abandoned: u64,
    /// Events not sent because the app's events were stopped.
    #[serde(default)]
    pub webhooks_withheld: u64,
}

/// An element of `GET /_sim/webhooks`: one event and what became of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimWebhookDelivery {
    pub id: u64,
    pub event: String,
    pub client_id: String,
    pub url: String,
    pub attempts: u32,
    /// `pending` | `delivered` | `retrying` | `abandoned`.
    pub status: String,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub body: serde_json::Value,
}

/// Answer of `POST /_sim/apps/{client_id}/url_validation` (synchronous).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimUrlValidation {
    pub validated: bool,
    pub plain_token: String,
    pub status_code: Option<u16>,
    pub error: Option<String>,
}

/// Accepts scopes as `["a", "b"]` or `"a b"`.
fn scopes_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scopes {
        List(Vec<String>),
        Spaced(String),
    }
    Ok(match Option::<Scopes>::deserialize(d)? {
        None => None,
        Some(Scopes::List(v)) => Some(v),
        Some(Scopes::Spaced(s)) => Some(s.split_whitespace().map(str::to_owned).collect()),
    })
}
