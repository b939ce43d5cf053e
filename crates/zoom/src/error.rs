//! One error type for every way a call to Zoom can fail, classified so callers
//! branch on the class (`is_final`, `is_temporary`, the variant), never on text.
//!
//! No variant ever carries a token, a secret, an authorization code or a request
//! URL: messages that come from Zoom are scrubbed of every secret the request sent
//! (see [`scrub`]) and cut to a bounded length.

use std::time::{Duration, SystemTime};

/// What went wrong talking to Zoom.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoomError {
    /// The OAuth grant is gone: `invalid_grant`, `invalid_client` or
    /// `unauthorized_client` at the token or revoke endpoint. For a refresh this
    /// means the connection must be re-authorised; for a code exchange it means
    /// the code or redirect URI was refused.
    #[error("Zoom refused the grant ({code}): {reason}")]
    GrantRevoked {
        /// Zoom's `error` value, e.g. `invalid_grant`.
        code: String,
        /// Zoom's `reason`, e.g. `Invalid Token!`.
        reason: String,
    },

    /// The REST API refused the access token (HTTP 401, normally code 124).
    #[error("Zoom rejected the access token (code {code}): {message}")]
    AccessTokenRejected { code: String, message: String },

    /// The thing asked about does not exist at Zoom (HTTP 404, or codes such as
    /// 3001 "meeting does not exist" and 1001 "user does not exist").
    #[error("Zoom says it does not exist (code {code}): {message}")]
    NotFound { code: String, message: String },

    /// Zoom asked us to slow down (HTTP 429). `retry_after` is Zoom's
    /// `Retry-After`, relative to when the answer arrived, when it sent one.
    #[error("Zoom rate limit reached{}", fmt_retry_after(*.retry_after))]
    RateLimited { retry_after: Option<Duration> },

    /// Zoom could not be reached or failed (5xx, timeout, connection refused or
    /// dropped). `outcome_unknown` is true when the request may have reached Zoom
    /// (a timeout or a dropped answer): for a refresh, the old refresh token may
    /// already be dead.
    #[error("Zoom is unavailable: {reason}")]
    Unavailable {
        reason: String,
        outcome_unknown: bool,
    },

    /// The app or token lacks the permission or scope for this call: HTTP 403,
    /// code 4711 ("does not contain scopes"), 200 ("No permission") or 3000
    /// ("Cannot access meeting info", e.g. not the meeting's host).
    #[error("Zoom refused the call for lack of permission (code {code}): {message}")]
    Forbidden { code: String, message: String },

    /// Any other 4xx: Zoom understood the request and refused it.
    #[error("Zoom refused the request with HTTP {status} (code {code}): {message}")]
    BadRequest {
        status: u16,
        code: String,
        message: String,
    },

    /// Zoom answered something we could not understand.
    #[error("Zoom sent an answer we could not read (HTTP {status}): {detail}")]
    BadResponse { status: u16, detail: String },

    /// The call was not sent because its input cannot be right (e.g. a meeting
    /// id that is not a number). A bug in the caller, never Zoom's fault.
    #[error("request to Zoom not sent: {0}")]
    InvalidInput(String),
}

fn fmt_retry_after(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("; retry after {} s", d.as_secs()),
        None => String::new(),
    }
}

impl ZoomError {
    /// The grant is gone for good: the connection must be re-authorised.
    pub fn is_final(&self) -> bool {
        matches!(self, ZoomError::GrantRevoked { .. })
    }

    /// Trying again later may succeed (rate limit, outage, timeout).
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            ZoomError::RateLimited { .. } | ZoomError::Unavailable { .. }
        )
    }

    /// Zoom's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ZoomError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// Zoom's own error code (`invalid_grant`, `124`, `3001`, …), when it sent one.
    pub fn zoom_code(&self) -> Option<&str> {
        let code = match self {
            ZoomError::GrantRevoked { code, .. }
            | ZoomError::AccessTokenRejected { code, .. }
            | ZoomError::NotFound { code, .. }
            | ZoomError::Forbidden { code, .. }
            | ZoomError::BadRequest { code, .. } => code.as_str(),
            _ => return None,
        };
        (!code.is_empty()).then_some(code)
    }

    /// Zoom refused a local recording token because the host's "Local recording"
    /// setting is off: HTTP 400, code 3000 "Not allowed to start local recording"
    /// (code 3000 also means "Cannot access meeting info", so the message decides).
    pub fn is_local_recording_disabled(&self) -> bool {
        matches!(self, ZoomError::Forbidden { code, message }
            if code == "3000" && message.to_ascii_lowercase().contains("local recording"))
    }

    /// A stable snake_case name for the class, for logs, metrics and stored
    /// failure data.
    pub fn class(&self) -> &'static str {
        match self {
            ZoomError::GrantRevoked { .. } => "grant_revoked",
            ZoomError::AccessTokenRejected { .. } => "access_token_rejected",
            ZoomError::NotFound { .. } => "not_found",
            ZoomError::RateLimited { .. } => "rate_limited",
            ZoomError::Unavailable { .. } => "unavailable",
            ZoomError::Forbidden { .. } => "forbidden",
            ZoomError::BadRequest { .. } => "bad_request",
            ZoomError::BadResponse { .. } => "bad_response",
            ZoomError::InvalidInput(_) => "invalid_input",
        }
    }

    /// One sentence a person can read, with no secret in it. Same as `Display`.
    pub fn description(&self) -> String {
        self.to_string()
    }
}

/// Longest piece of Zoom-provided text we keep in an error.
const MAX_MESSAGE_CHARS: usize = 300;

/// Make Zoom-provided text safe to keep in an error: every secret the request
/// carried is replaced by `[redacted]`, control characters are dropped, and the
/// text is cut to a bounded length.
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        // Short strings would redact ordinary words; real secrets are long.
        if secret.len() >= 6 && out.contains(secret) {
            out = out.replace(secret, "[redacted]");
        }
    }
    let mut cleaned: String = out
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE_CHARS)
        .collect();
    if out.chars().count() > MAX_MESSAGE_CHARS {
        cleaned.push('…');
    }
    cleaned
}

/// Longest wait believed from a `Retry-After`: Zoom's daily limit resets within a day.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// Parse a `Retry-After` value in every form Zoom has been seen to send:
/// delta-seconds (per-second limits), an ISO 8601 / RFC 3339 date such as
/// `2020-05-31T00:00:00Z` (the daily-limit example in Zoom's rate-limit docs), or an
/// HTTP date (RFC 9110). A date is taken relative to `now` (one in the past means
/// "now"). Anything else is `None`, and the caller backs off with jitter instead.
/// Every form is capped at one day rather than overflow a caller's clock or sleep
/// for years.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let when = match httpdate::parse_http_date(value) {
            Ok(when) => when,
            Err(_) => iso8601_date(value)?,
        };
        when.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// An ISO 8601 date-time with an offset (`2020-05-31T00:00:00Z`,
/// `2020-05-31T00:00:00.000+00:00`), or one without any (`2020-05-31T00:00:00`,
/// taken as UTC: Zoom's daily limits reset at 00:00 GMT).
fn iso8601_date(value: &str) -> Option<SystemTime> {
    let utc = match chrono::DateTime::parse_from_rfc3339(value) {
        Ok(t) => t.with_timezone(&chrono::Utc),
        Err(_) => chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()?
            .and_utc(),
    };
    let millis = u64::try_from(utc.timestamp_millis()).unwrap_or(0);
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(millis))
}

/// How long to wait before attempt number `attempt` (0-based) when Zoom gave no
/// `Retry-After`: exponential from 1 s, capped at 5 minutes, with full jitter.
pub fn backoff_delay(attempt: u32) -> Duration {
    use rand::Rng;
    let ceiling_ms = 1_000u64
        .saturating_mul(1u64 << attempt.min(20))
        .min(300_000);
    Duration::from_millis(rand::thread_rng().gen_range(ceiling_ms / 2..=ceiling_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds() {
        let now = SystemTime::now();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_accepts_an_http_date_relative_to_now() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:51:37 GMT", now),
            Some(Duration::from_secs(120))
        );
    }

    #[test]
    fn retry_after_in_the_past_means_now() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    /// Zoom's rate-limit docs give the daily-limit header as
    /// `Retry-After: 2020-05-31T00:00:00Z` (developers.zoom.us/docs/api/rate-limits,
    /// quoted in devforum.zoom.us/t/18928).
    #[test]
    fn retry_after_accepts_an_iso_8601_date_as_in_zooms_documented_example() {
        let now = httpdate::parse_http_date("Sat, 30 May 2020 23:58:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("2020-05-31T00:00:00Z", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("2020-05-31T00:00:00.000+00:00", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("2020-05-31T02:00:00+02:00", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("2020-05-31T00:00:00", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("2020-05-30T00:00:00Z", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("9999-12-31T23:59:59Z", now),
            Some(Duration::from_secs(86_400))
        );
    }

    #[test]
    fn retry_after_garbage_is_none() {
        let now = SystemTime::now();
        for v in [
            "",
            "soon",
            "-5",
            "1.5",
            "99999999999999999999999x",
            "2020-13-45T00:00:00Z",
            "1969-01-01T00:00:00Z junk",
        ] {
            assert_eq!(parse_retry_after(v, now), None, "{v}");
        }
    }

    #[test]
    fn huge_retry_after_is_capped_at_a_day() {
        let now = SystemTime::now();
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(86_400))
        );
    }

    #[test]
    fn a_far_future_retry_after_date_is_capped_at_a_day_like_seconds_are() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let wait = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now).unwrap();
        assert_eq!(wait, Duration::from_secs(86_400));
    }

    #[test]
    fn scrub_removes_every_secret_the_request_carried() {
        let msg = scrub("bad token abcdef123456 used", &["abcdef123456"]);
        assert_eq!(msg, "bad token [redacted] used");
    }

    #[test]
    fn scrub_bounds_length_and_drops_control_characters() {
        let msg = scrub(&format!("a\nb{}", "x".repeat(1000)), &[]);
        assert!(msg.starts_with("ab"));
        assert!(msg.chars().count() <= MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn classes_answer_final_and_temporary() {
        let revoked = ZoomError::GrantRevoked {
            code: "invalid_grant".into(),
            reason: "Invalid Token!".into(),
        };
        assert!(revoked.is_final() && !revoked.is_temporary());
        assert_eq!(revoked.zoom_code(), Some("invalid_grant"));
        let limited = ZoomError::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
        };
        assert!(limited.is_temporary() && !limited.is_final());
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(
            limited.description(),
            "Zoom rate limit reached; retry after 3 s"
        );
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        assert!(backoff_delay(0) <= Duration::from_secs(1));
        assert!(backoff_delay(0) >= Duration::from_millis(500));
        assert!(backoff_delay(100) <= Duration::from_secs(300));
    }
}
