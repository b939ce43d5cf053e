//! Proof that concurrent token requests for one connection share one refresh
//! (DESIGN.md §5 "Refresh tokens rotate", §6 single flight; issue 4 "Proof
//! required"), on SQLite and on PostgreSQL.

use std::time::Duration;

use chrono::{DateTime, Utc};
use keeper::config::Settings;
use reqwest::Method;
use serde_json::json;
use testkit::{on_both_databases, Backend, TestApp};

const REDIRECT_URI: &str = "https://bots.example.com/zoom/callback";
const CLIENT_ID: &str = "proof-client";

/// Many requests at once; the per-project limiter is not what is being proved.
fn unlimited() -> Settings {
    Settings {
        rate_limit_per_second: Some(1e9),
        rate_limit_burst: Some(u32::MAX),
        ..Settings::default()
    }
}

/// A simulated Zoom user who authorised the app, connected through the API:
/// (connection id, Zoom user id). The sim issues access tokens living `ttl_s`.
async fn connect_user(app: &TestApp, app_id: &str, ttl_s: u64) -> (String, String) {
    let control = app.sim.control();
    control
        .set_config(&zoom_sim::SimConfig {
            access_token_ttl_s: Some(ttl_s),
            ..Default::default()
        })
        .await
        .expect("sim config");
    let user = control
        .create_user(&zoom_sim::SimUser::default())
        .await
        .expect("sim user");
    let code = control
        .authorize(&zoom_sim::SimAuthorize {
            client_id: CLIENT_ID.into(),
            user_id: user.id.clone(),
            redirect_uri: REDIRECT_URI.into(),
            ..Default::default()
        })
        .await
        .expect("authorization code");
    let created = app
        .send(
            app.request(Method::POST, "/api/v1/zoom_oauth_connections")
                .json(&json!({
                    "zoom_oauth_app_id": app_id,
                    "authorization_code": code,
                    "redirect_uri": REDIRECT_URI,
                })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json["id"]
        .as_str()
        .expect("connection id")
        .to_owned();
    (id, user.id)
}

/// `n` `access_token` requests for `id`, all in flight at once: (status, token,
/// expires_at) of each.
async fn concurrent_access_tokens(app: &TestApp, id: &str, n: usize) -> Vec<(u16, String, String)> {
    let path = format!("/api/v1/zoom_oauth_connections/{id}/access_token");
    let requests = (0..n).map(|_| {
        let req = app.request(Method::POST, &path);
        async move { testkit::Answer::read(req.send().await.expect("request sent")).await }
    });
    futures::future::join_all(requests)
        .await
        .into_iter()
        .map(|a| {
            (
                a.status,
                a.json["token"].as_str().unwrap_or(&a.text).to_owned(),
                a.json["expires_at"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn token_calls(app: &TestApp) -> u64 {
    let stats = app.sim.control().stats().await.expect("sim stats");
    stats
        .api_calls_by_endpoint
        .get("POST /oauth/token")
        .copied()
        .unwrap_or(0)
}

async fn two_hundred_requests_for_an_expired_token_share_one_refresh(backend: Backend) {
    let Some(app) = testkit::spawn_app_with(backend, unlimited()).await else {
        return;
    };
    let app_id = app.new_app(CLIENT_ID).await["id"]
        .as_str()
        .expect("app id")
        .to_owned();
    // The access token from the code exchange dies two seconds after it is issued.
    let (id, user_id) = connect_user(&app, &app_id, 2).await;
    app.sim
        .control()
        .set_config(&zoom_sim::SimConfig {
            access_token_ttl_s: Some(3599),
            // Three seconds later at Zoom, and in zoomkeeper below: the token is dead.
            clock_offset_s: Some(3),
            ..Default::default()
        })
        .await
        .expect("sim config");
    app.keeper.clock.advance(Duration::from_secs(3));
    let before = app.sim.control().stats().await.expect("sim stats");
    assert_eq!(before.stale_refresh_token_uses, 0);

    let answers = concurrent_access_tokens(&app, &id, 200).await;

    for (status, body, _) in &answers {
        assert_eq!(*status, 200, "{body}");
    }
    let (_, token, expires_at) = &answers[0];
    assert!(
        answers
            .iter()
            .all(|(_, t, e)| t == token && e == expires_at),
        "all 200 answers carry the same token and expiry"
    );
    let after = app.sim.control().stats().await.expect("sim stats");
    // Counted from the connection's creation, so a keeper refresh racing the burst
    // would show here too.
    assert_eq!(after.refresh_grants, 1, "exactly one refresh at Zoom");
    assert_eq!(after.stale_refresh_token_uses, 0);
    assert_eq!(after.invalid_grant_errors, 0);

    let info = app
        .sim
        .control()
        .token_info(token)
        .await
        .expect("token lookup")
        .expect("Zoom issued this token");
    assert_eq!(info.token_type, "access_token");
    assert_eq!(info.status, "active");
    assert_eq!(info.user_id.as_deref(), Some(user_id.as_str()));
    assert_eq!(info.client_id, CLIENT_ID);
    let zoom_expiry = info.expires_at.expect("access tokens expire");
    assert!(zoom_expiry > Utc::now() + chrono::Duration::seconds(120));
    let ours: DateTime<Utc> = expires_at.parse().expect("expires_at is RFC 3339");
    // zoomkeeper counts `expires_in` from when Zoom's answer arrived, so its expiry
    // may run later than Zoom's by the round trip; a second covers that.
    assert!(
        ours <= zoom_expiry + chrono::Duration::seconds(1)
            && ours > Utc::now() + chrono::Duration::seconds(120),
        "expires_at {ours} is Zoom's {zoom_expiry} (within a second) and at least 120 s away"
    );
}

async fn a_cached_token_valid_for_two_minutes_makes_no_refresh(backend: Backend) {
    let Some(app) = testkit::spawn_app_with(backend, unlimited()).await else {
        return;
    };
    let app_id = app.new_app(CLIENT_ID).await["id"]
        .as_str()
        .expect("app id")
        .to_owned();
    // A few seconds more than the 120 s a caller is promised.
    let (id, _) = connect_user(&app, &app_id, 150).await;
    let calls_before = token_calls(&app).await;

    let mut answers = concurrent_access_tokens(&app, &id, 50).await;
    for _ in 0..50 {
        answers.extend(concurrent_access_tokens(&app, &id, 1).await);
    }

    assert!(answers.iter().all(|(status, _, _)| *status == 200));
    let token = &answers[0].1;
    assert!(answers.iter().all(|(_, t, _)| t == token));
    let stats = app.sim.control().stats().await.expect("sim stats");
    assert_eq!(stats.refresh_grants, 0, "no refresh at all");
    assert_eq!(
        token_calls(&app).await,
        calls_before,
        "no call to /oauth/token"
    );
    let info = app
        .sim
        .control()
        .token_info(token)
        .await
        .expect("token lookup")
        .expect("Zoom issued this token");
    assert_eq!(info.status, "active");
}

on_both_databases!(
    two_hundred_requests_for_an_expired_token_share_one_refresh,
    a_cached_token_valid_for_two_minutes_makes_no_refresh,
);
