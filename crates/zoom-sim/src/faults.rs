//! Everything between a request to `/oauth/*` or `/v2/*` and its handler: call
//! counting, per-account rate limiting and injected faults. `/_sim/*` never passes here.

use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::Rng;
use serde_json::json;

use crate::server::Sim;
use crate::types::SimRetryAfter;
use crate::world::World;
use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};

/// Marks a response the server must not send: it closes the connection instead.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DropConnection;

/// How long a "timeout" fault keeps the client waiting.
const HANG: Duration = Duration::from_secs(3600);

enum Action {
    Pass,
    Drop,
    Hang,
    Error(StatusCode),
    RateLimited(Limited),
}

/// Zoom's rate-limit categories ("Rate Limit Label" on every endpoint of Zoom's API
/// reference; developers.zoom.us/docs/api/rate-limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Category {
    Light,
    Medium,
    // Zoom's reports and dashboards; no endpoint the simulator serves is Heavy.
    #[allow(dead_code)]
    Heavy,
}

impl Category {
    /// Zoom's label for the endpoints the simulator serves: "List users" (`GET
    /// /users`) and the meeting lists are Medium ("create, read and update multiple
    /// resources at once"); every other one reads a single resource and is Light ("Get
    /// a user's token", the local recording token, `/users/me`). No Heavy endpoint is
    /// served.
    fn of(path: &str) -> Category {
        let path = path.trim_end_matches('/');
        if path == "/v2/users" || (path.starts_with("/v2/users/") && path.ends_with("/meetings")) {
            Category::Medium
        } else {
            Category::Light
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Category::Light => "Light",
            Category::Medium => "Medium",
            Category::Heavy => "Heavy",
        }
    }
}

struct Limited {
    category: Category,
    limit: u32,
    /// Labelled `Daily-limit`.
    daily: bool,
    /// Refused by the daily budget: it resets at the next 00:00 GMT.
    until_midnight: bool,
    retry_after: SimRetryAfter,
    /// The simulated clock when the request was refused.
    now: DateTime<Utc>,
}

struct Plan {
    latency: Option<Duration>,
    action: Action,
}

fn plan(w: &mut World, path: &str, auth: Option<&str>) -> Plan {
    let f = w.faults.clone();
    let applies = f
        .paths
        .as_ref()
        .is_none_or(|prefixes| prefixes.iter().any(|p| path.starts_with(p.as_str())));
    if !applies {
        return Plan {
            latency: None,
            action: Action::Pass,
        };
    }
    let latency = f.latency_ms.filter(|ms| *ms > 0).map(Duration::from_millis);
    let mut rng = rand::thread_rng();
    let mut roll = |rate: Option<f64>| rate.is_some_and(|r| rng.gen::<f64>() < r);
    let action = if roll(f.drop_connection_rate) {
        Action::Drop
    } else if roll(f.timeout_rate) {
        Action::Hang
    } else if path.starts_with("/v2/") {
        rate_limited(w, &f, path, auth)
            .map(Action::RateLimited)
            .unwrap_or(Action::Pass)
    } else {
        Action::Pass
    };
    let countdown = f.fail_next.filter(|n| *n > 0);
    let action = match action {
        Action::Pass if countdown.is_some() => {
            w.faults.fail_next = countdown.map(|n| n - 1);
            Action::Error(
                f.status_code
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            )
        }
        Action::Pass
            if f.fail_next.is_none() && roll(f.error_rate.or(f.status_code.map(|_| 1.0))) =>
        {
            let status = f
                .status_code
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or_else(|| {
                    if rand::thread_rng().gen_bool(0.5) {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                });
            Action::Error(status)
        }
        other => other,
    };
    match action {
        Action::RateLimited { .. } => w.stats.rate_limited += 1,
        Action::Drop | Action::Hang | Action::Error(_) => w.stats.faults_injected += 1,
        Action::Pass => {}
    }
    Plan { latency, action }
}

pub(crate) async fn zoom_surface(State(sim): State<Sim>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| path.clone());
    let endpoint = format!("{} {}", req.method(), route);
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let plan = {
        let mut w = sim.lock();
        w.stats.api_calls += 1;
        *w.stats.api_calls_by_endpoint.entry(endpoint).or_default() += 1;
        plan(&mut w, &path, auth.as_deref())
    };
    if let Some(latency) = plan.latency {
        tokio::time::sleep(latency).await;
    }
    match plan.action {
        Action::Pass => next.run(req).await,
        Action::Drop => {
            let mut r = Response::new(Body::empty());
            r.extensions_mut().insert(DropConnection);
            r
        }
        Action::Hang => {
            tokio::time::sleep(HANG).await;
            injected_error(&path, StatusCode::GATEWAY_TIMEOUT)
        }
        Action::Error(status) => injected_error(&path, status),
        Action::RateLimited(limited) => rate_limited_answer(&limited),
    }
}

fn injected_error(path: &str, status: StatusCode) -> Response {
    let mut r = if path.starts_with("/oauth/") {
        (
            status,
            Json(json!({"reason": "Internal Error", "error": "server_error"})),
        )
            .into_response()
    } else {
        let message = status.canonical_reason().unwrap_or("Error");
        (
            status,
            Json(json!({"code": status.as_u16(), "message": message})),
        )
            .into_response()
    };
    if status == StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// Counts a `/v2` request against its Zoom account's daily and per-second (per
/// category) limits; `Some` when one is exceeded.
fn rate_limited(
    w: &mut World,
    f: &crate::types::SimFaults,
    path: &str,
    auth: Option<&str>,
) -> Option<Limited> {
    let category = Category::of(path);
    let per_s = match category {
        Category::Light => f.rate_limit_light_per_s,
        Category::Medium => f.rate_limit_medium_per_s,
        Category::Heavy => f.rate_limit_heavy_per_s,
    }
    .or(f.rate_limit_per_s);
    if per_s.is_none() && f.daily_limit.is_none() {
        return None;
    }
    let account = w.account_of_bearer(auth)?;
    let now = w.now();
    let legacy_date = f.retry_after_http_date.unwrap_or(false);
    if let Some(limit) = f.daily_limit {
        if w.over_daily_limit(&account, limit) {
            return Some(Limited {
                category,
                limit,
                daily: true,
                until_midnight: true,
                retry_after: f.retry_after.unwrap_or(if legacy_date {
                    SimRetryAfter::HttpDate
                } else {
                    SimRetryAfter::Iso8601
                }),
                now,
            });
        }
    }
    let limit = per_s?;
    w.over_rate_limit(&format!("{account}/{}", category.as_str()), limit)
        .then(|| Limited {
            category,
            limit,
            // The older switch made every 429 look like the daily limit.
            daily: legacy_date,
            until_midnight: false,
            retry_after: f.retry_after.unwrap_or(if legacy_date {
                SimRetryAfter::HttpDate
            } else {
                SimRetryAfter::Seconds
            }),
            now,
        })
}

/// Zoom's 429. Per-second (QPS) limits answer `Retry-After` in seconds; the daily
/// limit names the next 00:00 GMT, as an ISO 8601 date in Zoom's documented example
/// (`Retry-After: 2020-05-31T00:00:00Z`, developers.zoom.us/docs/api/rate-limits),
/// as an HTTP date, or not at all (devforum.zoom.us/t/18928: a daily-limit 429 with
/// neither `X-RateLimit-Type` nor `Retry-After`).
fn rate_limited_answer(l: &Limited) -> Response {
    let at = if l.until_midnight {
        // The next 00:00 GMT on the simulated clock.
        let midnight = l.now.date_naive().and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        midnight.map_or(l.now, |m| m + ChronoDuration::days(1))
    } else {
        // Two seconds ahead: a date has whole seconds and must not be in the past.
        l.now + ChronoDuration::seconds(2)
    };
    let secs = (at - l.now).num_seconds().max(1);
    let retry_after = match l.retry_after {
        // A per-second window ends within the second.
        SimRetryAfter::Seconds if !l.until_midnight => Some("1".to_owned()),
        SimRetryAfter::Seconds => Some(secs.to_string()),
        SimRetryAfter::Iso8601 => Some(at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        SimRetryAfter::HttpDate => {
            let real = SystemTime::now() + Duration::from_secs(secs.unsigned_abs());
            Some(httpdate::fmt_http_date(real))
        }
        SimRetryAfter::None => None,
    };
    let message = if l.daily {
        "You have reached the maximum daily rate limit for this API. Refer to the response header for details on when you can make another request."
    } else {
        "You have reached the maximum per-second rate limit for this API. Try again later."
    };
    let mut r = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({"code": 429, "message": message})),
    )
        .into_response();
    let h = r.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    set("x-ratelimit-category", l.category.as_str().into());
    set("x-ratelimit-limit", l.limit.to_string());
    set("x-ratelimit-remaining", "0".into());
    if let Some(value) = retry_after {
        set("retry-after", value);
        set(
            "x-ratelimit-type",
            if l.daily { "Daily-limit" } else { "QPS" }.into(),
        );
    }
    r
}
