//! Fault injection on `/oauth` and `/v2`: rate limits, errors, latency, drops, hangs.

use std::time::{Duration, Instant};

use crate::common::*;
use axum::http::StatusCode;
use zoom_sim::*;

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_and_ratelimit_headers_per_account() {
    let zoom = Zoom::start().await;
    let alice = zoom.user().await;
    let bob = zoom.user().await;
    let a = zoom.connect(&alice.id, None).await;
    let b = zoom.connect(&bob.id, None).await;
    zoom.control
        .set_faults(&SimFaults {
            rate_limit_per_s: Some(3),
            ..Default::default()
        })
        .await
        .unwrap();

    let mut limited = None;
    for _ in 0..8 {
        let r = zoom.get("/v2/users/me", &a.access).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("a 429 within 8 quick calls at 3/s");
    assert_eq!(r.body["code"], 429);
    let header = |k: &str| {
        r.headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(header("retry-after"), "1");
    assert_eq!(header("x-ratelimit-type"), "QPS");
    assert_eq!(header("x-ratelimit-limit"), "3");
    assert_eq!(header("x-ratelimit-remaining"), "0");
    assert!(!header("x-ratelimit-category").is_empty());

    // Another account has its own budget.
    assert_eq!(
        zoom.get("/v2/users/me", &b.access).await.status,
        StatusCode::OK
    );
    assert!(zoom.control.stats().await.unwrap().rate_limited >= 1);

    // The window passes.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        zoom.get("/v2/users/me", &a.access).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn daily_limit_sends_retry_after_as_an_http_date() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let t = zoom.connect(&user.id, None).await;
    zoom.control
        .set_faults(&SimFaults {
            rate_limit_per_s: Some(0),
            retry_after_http_date: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    let r = zoom.get("/v2/users/me", &t.access).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after = r.headers["retry-after"].to_str().unwrap();
    let at = httpdate::parse_http_date(retry_after).expect("an HTTP date");
    assert!(at > std::time::SystemTime::now());
    assert_eq!(r.headers["x-ratelimit-type"], "Daily-limit");
}

#[tokio::test]
async fn error_rate_one_answers_500_or_503_and_status_code_picks_one() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let t = zoom.connect(&user.id, None).await;
    zoom.control
        .set_faults(&SimFaults {
            error_rate: Some(1.0),
            ..Default::default()
        })
        .await
        .unwrap();
    for _ in 0..5 {
        let r = zoom.get("/v2/users/me", &t.access).await;
        assert!(matches!(r.status.as_u16(), 500 | 503), "{}", r.status);
        let o = zoom.refresh(&t.refresh).await;
        assert!(o.status.is_server_error());
        assert_eq!(o.body["error"], "server_error");
    }
    zoom.control
        .set_faults(&SimFaults {
            status_code: Some(502),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        zoom.get("/v2/users/me", &t.access).await.status,
        StatusCode::BAD_GATEWAY
    );
    // A faulted refresh never reached the token logic: the refresh token still works.
    zoom.control
        .set_faults(&SimFaults::default())
        .await
        .unwrap();
    assert_eq!(zoom.refresh(&t.refresh).await.status, StatusCode::OK);
    let stats = zoom.control.stats().await.unwrap();
    assert_eq!(stats.stale_refresh_token_uses, 0);
    assert_eq!(stats.faults_injected, 11);
}

#[tokio::test]
async fn latency_is_added_before_answering() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let t = zoom.connect(&user.id, None).await;
    zoom.control
        .set_faults(&SimFaults {
            latency_ms: Some(250),
            ..Default::default()
        })
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(
        zoom.get("/v2/users/me", &t.access).await.status,
        StatusCode::OK
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
    // The control API is never slowed down.
    let started = Instant::now();
    zoom.control.stats().await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(200));
}

#[tokio::test]
async fn dropped_connections_get_no_answer_at_all() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let t = zoom.connect(&user.id, None).await;
    zoom.control
        .set_faults(&SimFaults {
            drop_connection_rate: Some(1.0),
            ..Default::default()
        })
        .await
        .unwrap();
    let err = zoom
        .http
        .get(format!("{}/v2/users/me", zoom.url))
        .bearer_auth(&t.access)
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_status() && !err.is_timeout(), "{err:?}");
    let err = zoom
        .http
        .post(format!("{}/oauth/token", zoom.url))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_status(), "{err:?}");
}

#[tokio::test]
async fn timeouts_hang_past_the_clients_deadline() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let t = zoom.connect(&user.id, None).await;
    zoom.control
        .set_faults(&SimFaults {
            timeout_rate: Some(1.0),
            ..Default::default()
        })
        .await
        .unwrap();
    let err = zoom
        .http
        .get(format!("{}/v2/users/me", zoom.url))
        .bearer_auth(&t.access)
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
}

#[tokio::test]
async fn faults_can_be_limited_to_path_prefixes_and_never_touch_the_control_api() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let t = zoom.connect(&user.id, None).await;
    zoom.control
        .set_faults(&SimFaults {
            error_rate: Some(1.0),
            paths: Some(vec!["/v2/users/me/zak".into()]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(zoom
        .get("/v2/users/me/zak", &t.access)
        .await
        .status
        .is_server_error());
    assert_eq!(
        zoom.get("/v2/users/me", &t.access).await.status,
        StatusCode::OK
    );
    assert_eq!(zoom.refresh(&t.refresh).await.status, StatusCode::OK);

    zoom.control
        .set_faults(&SimFaults {
            drop_connection_rate: Some(1.0),
            ..Default::default()
        })
        .await
        .unwrap();
    zoom.control.stats().await.expect("control API unaffected");
    assert_eq!(zoom.control.users().await.unwrap().len(), 1);
}

#[tokio::test]
async fn out_of_range_faults_are_refused() {
    let zoom = Zoom::start().await;
    assert!(zoom
        .control
        .set_faults(&SimFaults {
            error_rate: Some(1.5),
            ..Default::default()
        })
        .await
        .is_err());
    assert!(zoom
        .control
        .set_faults(&SimFaults {
            status_code: Some(200),
            ..Default::default()
        })
        .await
        .is_err());
}

fn header(r: &Answer, k: &str) -> Option<String> {
    r.headers
        .get(k)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Zoom's rate limits are per account and per category: "APIs are grouped by
/// Request Type with unique rate limits for each", Light (a single resource, e.g.
/// Get a user) and Medium (several at once, e.g. List meetings)
/// (developers.zoom.us/docs/api/rate-limits).
#[tokio::test]
async fn rate_limits_are_kept_per_category_and_name_it() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let t = zoom.connect(&user.id, None).await;
    zoom.control
        .set_faults(&SimFaults {
            rate_limit_light_per_s: Some(100),
            rate_limit_medium_per_s: Some(0),
            ..Default::default()
        })
        .await
        .unwrap();
    let r = zoom
        .get("/v2/users/me/meetings?type=scheduled", &t.access)
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&r, "x-ratelimit-category").as_deref(),
        Some("Medium")
    );
    assert_eq!(header(&r, "x-ratelimit-type").as_deref(), Some("QPS"));
    assert_eq!(header(&r, "retry-after").as_deref(), Some("1"));
    // The Light budget is another one.
    assert_eq!(
        zoom.get("/v2/users/me", &t.access).await.status,
        StatusCode::OK
    );
    zoom.control
        .set_faults(&SimFaults {
            rate_limit_light_per_s: Some(0),
            ..Default::default()
        })
        .await
        .unwrap();
    let r = zoom.get("/v2/users/me/token?type=zak", &t.access).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "x-ratelimit-category").as_deref(), Some("Light"));
}

/// The daily limit as Zoom documents it: `X-RateLimit-Type: Daily-limit` and
/// `Retry-After: 2020-05-31T00:00:00Z`, the next 00:00 GMT
/// (developers.zoom.us/docs/api/rate-limits, "Example Response Header"); an HTTP date
/// as other Zoom answers carry; and none at all, as a developer saw on a daily-limit
/// 429 (devforum.zoom.us/t/18928, "I don't see the x-ratelimit-type or retry_after").
#[tokio::test]
async fn the_daily_limit_names_the_next_midnight_in_each_form_zoom_sends() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let t = zoom.connect(&user.id, None).await;
    zoom.control
        .set_faults(&SimFaults {
            daily_limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        zoom.get("/v2/users/me", &t.access).await.status,
        StatusCode::OK
    );
    let r = zoom.get("/v2/users/me", &t.access).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&r, "x-ratelimit-type").as_deref(),
        Some("Daily-limit")
    );
    let iso = header(&r, "retry-after").expect("Retry-After");
    let at = chrono::DateTime::parse_from_rfc3339(&iso).expect("an ISO 8601 date");
    assert!(iso.ends_with("T00:00:00Z"), "{iso}");
    let left = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        left > chrono::Duration::zero() && left <= chrono::Duration::days(1),
        "{iso}"
    );

    for (form, check) in [
        (SimRetryAfter::HttpDate, Some(true)),
        (SimRetryAfter::Seconds, Some(false)),
        (SimRetryAfter::None, None),
    ] {
        zoom.control
            .set_faults(&SimFaults {
                daily_limit: Some(0),
                retry_after: Some(form),
                ..Default::default()
            })
            .await
            .unwrap();
        let r = zoom.get("/v2/users/me", &t.access).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        let value = header(&r, "retry-after");
        match check {
            Some(true) => {
                httpdate::parse_http_date(value.as_deref().unwrap()).expect("an HTTP date");
            }
            Some(false) => {
                let secs: i64 = value.unwrap().parse().expect("seconds");
                assert!((1..=86_400).contains(&secs));
            }
            None => {
                assert_eq!(value, None);
                assert_eq!(header(&r, "x-ratelimit-type"), None);
            }
        }
    }
}
