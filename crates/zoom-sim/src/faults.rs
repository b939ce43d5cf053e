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
use crate::world::World;

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
    RateLimited { limit: u32, http_date: bool },
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
    } else if let Some(limit) = f.rate_limit_per_s.filter(|_| path.starts_with("/v2/")) {
        match w.account_of_bearer(auth) {
            Some(account) if w.over_rate_limit(&account, limit) => Action::RateLimited {
                limit,
                http_date: f.retry_after_http_date.unwrap_or(false),
            },
            _ => Action::Pass,
        }
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
        Action::RateLimited { limit, http_date } => rate_limited(limit, http_date),
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

/// Zoom's 429: per-second (QPS) limits answer `Retry-After` in seconds; the daily
/// limit answers an HTTP date.
fn rate_limited(limit: u32, http_date: bool) -> Response {
    let (limit_type, message, retry_after) = if http_date {
        // Two seconds ahead: an HTTP date has whole seconds and must not be in the past.
        let at = SystemTime::now() + Duration::from_secs(2);
        (
            "Daily-limit",
            "You have reached the maximum daily rate limit for this API. Refer to the response header for details on when you can make another request.",
            httpdate::fmt_http_date(at),
        )
    } else {
        (
            "QPS",
            "You have reached the maximum per-second rate limit for this API. Try again later.",
            "1".to_owned(),
        )
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
    set("retry-after", retry_after);
    set("x-ratelimit-category", "Light".into());
    set("x-ratelimit-type", limit_type.into());
    set("x-ratelimit-limit", limit.to_string());
    set("x-ratelimit-remaining", "0".into());
    r
}
