//! `POST /api/v1/zoom_join_tokens` (DESIGN.md §4), on SQLite and PostgreSQL against
//! the Zoom simulator: a bot gets every token from the right connection, or a
//! precise reason why not.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use keeper::config::Settings;
use keeper::storage::{MeetingIndexChange, MeetingRow, MeetingSource};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use testkit::{on_both_databases, spawn_app, spawn_app_with, Answer, Backend, TestApp};
use zoom_sim::{SimMeeting, SimTokenInfo, SimUser};

on_both_databases!(
    a_synced_meeting_gets_every_token_from_the_right_connection,
    pmi_and_personal_link_meetings_use_the_pmi_owner,
    every_missing_token_is_null_with_a_precise_problem,
    hostile_meeting_urls_and_bad_bodies_are_refused,
    callback_tokens_come_from_the_customer_server_signed,
    callbacks_to_private_addresses_are_refused_by_default,
    callbacks_carry_standard_webhooks_signatures_with_both_secrets_in_a_rotation,
    plain_http_callbacks_are_refused_by_default,
    a_personal_link_is_found_among_many_newer_lookalikes,
    a_host_with_local_recording_off_gets_a_problem_naming_the_setting,
    a_named_connection_mints_the_local_recording_token_without_the_index,
);

const CLIENT: &str = "join-client";
const SECRET: &str = "secret-of-join-client";

/// The service with one app; returns (app, zoa id).
async fn app_with(backend: Backend, settings: Settings) -> Option<(TestApp, String)> {
    let app = spawn_app_with(backend, settings).await?;
    let zoa = app.new_app(CLIENT).await["id"]
        .as_str()
        .expect("app id")
        .to_owned();
    Some((app, zoa))
}

/// A simulated user: (id, pmi).
async fn zoom_user(app: &TestApp) -> (String, u64) {
    let u = app
        .sim
        .control()
        .create_user(&SimUser::default())
        .await
        .expect("sim user");
    (u.id, u.pmi)
}

async fn meeting(app: &TestApp, user: &str) -> u64 {
    app.sim
        .control()
        .create_meeting(user, &SimMeeting::default())
        .await
        .expect("sim meeting")
        .id
}

/// Connects `user`; returns the connection id.
async fn connect(app: &TestApp, user: &str, extra: Value) -> String {
    let a = app.connect_user(CLIENT, user, extra).await;
    assert_eq!(a.status, 201, "{}", a.text);
    a.json["id"].as_str().expect("id").to_owned()
}

async fn sync(app: &TestApp) {
    let (_stop, stopping) = tokio::sync::watch::channel(false);
    keeper::meeting_sync::run_once(&app.keeper, &stopping)
        .await
        .expect("sync round");
}

async fn join(app: &TestApp, body: Value) -> Answer {
    app.send(
        app.request(Method::POST, "/api/v1/zoom_join_tokens")
            .json(&body),
    )
    .await
}

async fn info(app: &TestApp, token: &Value) -> SimTokenInfo {
    app.sim
        .control()
        .token_info(token.as_str().expect("a token"))
        .await
        .expect("token info")
        .expect("a token the simulator minted")
}

fn problems(a: &Answer) -> Vec<(String, String, String)> {
    a.json["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| {
            (
                p["token"].as_str().unwrap_or_default().to_owned(),
                p["code"].as_str().unwrap_or_default().to_owned(),
                p["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn a_synced_meeting_gets_every_token_from_the_right_connection(backend: Backend) {
    let Some((app, _)) = app_with(backend, Settings::default()).await else {
        return;
    };
    let (host, _) = zoom_user(&app).await;
    let (bot_owner, _) = zoom_user(&app).await;
    let m = meeting(&app, &host).await;
    connect(&app, &host, json!({})).await;
    connect(
        &app,
        &bot_owner,
        json!({"is_onbehalf_token_supported": true}),
    )
    .await;
    sync(&app).await;

    let asked_at = chrono::Utc::now().timestamp();
    let a = join(
        &app,
        json!({
            "meeting_url": format!("https://us05web.zoom.us/j/{m}?pwd=s3cret&tk=reg-token"),
            "onbehalf_token": {"zoom_oauth_connection_user_id": bot_owner},
            "zak_token": {"zoom_oauth_connection_user_id": bot_owner},
            "sdk_signature": {"role": 0},
        }),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(problems(&a), vec![], "{}", a.text);
    assert_eq!(a.json["meeting_id"], m.to_string());
    assert_eq!(a.json["meeting_password"], "s3cret");
    assert_eq!(a.json["registrant_token"], "reg-token");
    assert!(a.json["join_token"].is_null());

    let lrt = info(&app, &a.json["app_privilege_token"]).await;
    assert_eq!(lrt.token_type, "local_recording");
    assert_eq!(
        lrt.user_id.as_deref(),
        Some(host.as_str()),
        "minted by the host"
    );
    assert_eq!(lrt.meeting_id, Some(m));
    assert_eq!(lrt.bypass_waiting_room, Some(true));
    let obf = info(&app, &a.json["onbehalf_token"]).await;
    assert_eq!(obf.token_type, "onbehalf");
    assert_eq!(obf.user_id.as_deref(), Some(bot_owner.as_str()));
    assert_eq!(obf.meeting_id, Some(m));
    let zak = info(&app, &a.json["zak_token"]).await;
    assert_eq!(zak.token_type, "zak");
    assert_eq!(zak.user_id.as_deref(), Some(bot_owner.as_str()));

    let jwt = a.json["sdk_signature"]["jwt"].as_str().expect("jwt");
    let claims = zoom::sdk_signature::decode_and_verify(jwt, &SecretString::from(SECRET))
        .expect("signed with the app's client secret");
    assert_eq!((claims.mn, claims.role), (m, 0));
    assert_eq!(claims.app_key, CLIENT);
    // Two hours counted from now; iat is back-dated 30 s. Zoom staff: tokenExp must
    // be at least now + 1800 s.
    assert_eq!(
        claims.exp - claims.iat,
        2 * 60 * 60 + zoom::sdk_signature::IAT_SKEW
    );
    assert!(claims.token_exp >= asked_at + 2 * 60 * 60, "{claims:?}");
    let expires_at = a.json["sdk_signature"]["expires_at"]
        .as_str()
        .expect("expires_at");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(expires_at)
            .expect("RFC 3339")
            .timestamp(),
        claims.exp
    );
    // Host role, and a tokens log that names no token.
    let a = join(
        &app,
        json!({"meeting_url": format!("zoommtg://zoom.us/join?confno={m}"), "sdk_signature": {"role": 1}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let jwt = a.json["sdk_signature"]["jwt"].as_str().expect("jwt");
    let claims =
        zoom::sdk_signature::decode_and_verify(jwt, &SecretString::from(SECRET)).expect("valid");
    assert_eq!(claims.role, 1);
    let token = a.json["app_privilege_token"].as_str().expect("token");
    assert!(!testkit::captured_logs().contains(token));
}

async fn pmi_and_personal_link_meetings_use_the_pmi_owner(backend: Backend) {
    let Some((app, zoa)) = app_with(backend, Settings::default()).await else {
        return;
    };
    let (host, pmi) = zoom_user(&app).await;
    let id = connect(&app, &host, json!({})).await;
    sync(&app).await;

    let a = join(
        &app,
        json!({"meeting_url": format!("https://zoom.us/j/{pmi}")}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(problems(&a), vec![]);
    let lrt = info(&app, &a.json["app_privilege_token"]).await;
    assert_eq!(
        (lrt.user_id.as_deref(), lrt.meeting_id),
        (Some(host.as_str()), Some(pmi))
    );

    // The user set a personal link: `/my/host.room` is their PMI.
    app.keeper
        .store
        .apply_meeting_change(&MeetingIndexChange::ReplacePmi {
            row: MeetingRow {
                project_id: app.project_id.clone(),
                app_id: zoa,
                meeting_id: pmi.to_string(),
                connection_id: id,
                source: MeetingSource::Pmi,
                topic: None,
                start_time: None,
                synced_at: chrono::Utc::now(),
                host_user_id: None,
            },
            personal_meeting_url: Some("https://acme.zoom.us/my/host.room?pwd=roompass".into()),
        })
        .await
        .expect("personal link stored");
    let a = join(
        &app,
        json!({"meeting_url": "https://us02web.zoom.us/my/Host.Room", "sdk_signature": {"role": 0}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["meeting_id"], pmi.to_string());
    assert_eq!(a.json["meeting_password"], "roompass");
    let lrt = info(&app, &a.json["app_privilege_token"]).await;
    assert_eq!(
        (lrt.user_id.as_deref(), lrt.meeting_id),
        (Some(host.as_str()), Some(pmi))
    );
    let jwt = a.json["sdk_signature"]["jwt"].as_str().expect("jwt");
    let claims =
        zoom::sdk_signature::decode_and_verify(jwt, &SecretString::from(SECRET)).expect("valid");
    assert_eq!(claims.mn, pmi);

    let a = join(
        &app,
        json!({"meeting_url": "https://zoom.us/my/nobody.here"}),
    )
    .await;
    a.assert_error(400, "unknown_personal_link");
}

async fn every_missing_token_is_null_with_a_precise_problem(backend: Backend) {
    let Some((app, zoa)) = app_with(backend, Settings::default()).await else {
        return;
    };
    let (host, _) = zoom_user(&app).await;
    let (plain, _) = zoom_user(&app).await;
    let (gone, _) = zoom_user(&app).await;
    let m = meeting(&app, &host).await;
    // The host's grant covers onbehalf too, so the PATCH below may turn it on.
    let host_id = connect(&app, &host, json!({"is_onbehalf_token_supported": true})).await;
    connect(&app, &plain, json!({})).await;
    connect(&app, &gone, json!({"is_onbehalf_token_supported": true})).await;
    sync(&app).await;
    app.sim
        .control()
        .deauthorize(&gone, CLIENT)
        .await
        .expect("deauthorize");
    // The next token request for `gone` finds the grant revoked and disconnects it.
    let a = join(
        &app,
        json!({"meeting_url": "https://zoom.us/j/123456789",
               "zak_token": {"zoom_oauth_connection_user_id": gone}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);

    let a = join(
        &app,
        json!({
            "meeting_url": "https://zoom.us/j/123456789",
            "onbehalf_token": {"zoom_oauth_connection_user_id": "no-such-user"},
            "zak_token": {"zoom_oauth_connection_user_id": gone},
        }),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.json["app_privilege_token"].is_null());
    assert!(a.json["onbehalf_token"].is_null());
    assert!(a.json["zak_token"].is_null());
    assert!(a.json["sdk_signature"].is_null(), "not asked for");
    let p = problems(&a);
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(p.iter().any(|(t, c, msg)| t == "app_privilege_token"
        && c == "no_host_connection"
        && msg.contains("No connection hosts meeting 123456789")));
    assert!(p.iter().any(|(t, c, msg)| t == "onbehalf_token"
        && c == "no_connection"
        && msg.contains("no-such-user")));
    assert!(p
        .iter()
        .any(|(t, c, _)| t == "zak_token" && c == "connection_disconnected"));

    // Onbehalf capability off; a meeting Zoom does not know; then local recording off.
    app.keeper
        .store
        .apply_meeting_change(&MeetingIndexChange::Upsert(MeetingRow {
            project_id: app.project_id.clone(),
            app_id: zoa,
            meeting_id: "987654321".into(),
            connection_id: host_id.clone(),
            source: MeetingSource::Webhook,
            topic: None,
            start_time: None,
            synced_at: chrono::Utc::now(),
            host_user_id: None,
        }))
        .await
        .expect("index row");
    let a = join(
        &app,
        json!({"meeting_url": "https://zoom.us/j/987654321",
               "onbehalf_token": {"zoom_oauth_connection_user_id": plain}}),
    )
    .await;
    let p = problems(&a);
    assert!(
        p.iter().any(|(t, c, msg)| t == "app_privilege_token"
            && c == "zoom_error"
            && msg.contains("not_found")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|(t, c, _)| t == "onbehalf_token" && c == "capability_not_enabled"),
        "{p:?}"
    );

    let patched = app
        .send(
            app.request(Method::PATCH, &format!("/api/v1/zoom_oauth_connections/{host_id}"))
                .json(&json!({"is_local_recording_token_supported": false, "is_onbehalf_token_supported": true})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    let a = join(
        &app,
        json!({"meeting_url": format!("https://zoom.us/j/{m}")}),
    )
    .await;
    let p = problems(&a);
    assert!(
        p.iter().any(|(t, c, msg)| t == "app_privilege_token"
            && c == "capability_not_enabled"
            && msg.contains(&host_id)),
        "{p:?}"
    );
}

async fn hostile_meeting_urls_and_bad_bodies_are_refused(backend: Backend) {
    let Some((app, _)) = app_with(backend, Settings::default()).await else {
        return;
    };
    for url in [
        String::new(),
        "not a url".into(),
        "javascript:alert(1)".into(),
        "https://evil.example/j/123456789".into(),
        "https://zoom.us.evil.example/s/123456789?zak=SECRETZAK".into(),
        "https://evilzoom.us/j/123456789".into(),
        "https://user:pw@zoom.us/j/123456789".into(),
        "https://zoom.us:8443/j/123456789".into(),
        "https://zoom.us/j/12345".into(),
        "https://zoom.us/j/123456789/../../admin?zak=SECRETZAK".into(),
        "https://zoom.us/profile".into(),
        format!("https://zoom.us/j/123456789?pwd={}", "a".repeat(5_000)),
        "https://zoom.us/j/123456789?pwd=a%0Ab".into(),
    ] {
        let a = join(&app, json!({"meeting_url": url})).await;
        a.assert_error(400, "invalid_meeting_url");
        assert!(!a.text.contains("SECRETZAK"), "{}", a.text);
        assert!(!a.field_problems("meeting_url").is_empty());
    }
    // A start link's ZAK is never echoed, not even on success.
    let a = join(
        &app,
        json!({"meeting_url": "https://zoom.us/s/123456789?zak=SECRETZAK"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(!a.text.contains("SECRETZAK"));
    assert!(!testkit::captured_logs().contains("SECRETZAK"));

    for body in [
        json!({}),
        json!({"meeting_url": 5}),
        json!({"meeting_url": "https://zoom.us/j/123456789", "sdk_signature": {"role": 2}}),
        json!({"meeting_url": "https://zoom.us/j/123456789", "sdk_signature": {}}),
        json!({"meeting_url": "https://zoom.us/j/123456789", "zak_token": {}}),
        json!({"meeting_url": "https://zoom.us/j/123456789", "extra": true}),
    ] {
        let a = join(&app, body.clone()).await;
        assert_eq!(a.status, 400, "{body}: {}", a.text);
    }
    let a = join(
        &app,
        json!({"meeting_url": "https://zoom.us/j/123456789", "zoom_oauth_app_id": "zoa_AAAAAAAAAAAAAAAA"}),
    )
    .await;
    a.assert_error(400, "invalid_request");
    // Two apps and none named.
    app.new_app("second-client").await;
    let a = join(&app, json!({"meeting_url": "https://zoom.us/j/123456789"})).await;
    a.assert_error(400, "invalid_request");
    assert!(!a.field_problems("zoom_oauth_app_id").is_empty());
    // Another project sees none of this.
    let (_, key) = app.other_project("other").await;
    let a = app
        .send(
            app.request_as(&key, Method::POST, "/api/v1/zoom_join_tokens")
                .json(&json!({"meeting_url": "https://zoom.us/j/123456789"})),
        )
        .await;
    a.assert_error(400, "invalid_request");
    let a = app
        .send(
            app.http
                .post(app.url("/api/v1/zoom_join_tokens"))
                .json(&json!({"meeting_url": "https://zoom.us/j/123456789"})),
        )
        .await;
    a.assert_error(401, "missing_authorization");
}

/// What the customer's receiver saw.
#[derive(Default)]
struct Received {
    requests: Vec<(HeaderMap, String)>,
}

/// A customer server on 127.0.0.1: `/tokens` answers tokens, `/broken` 500,
/// `/moved` a redirect, `/list` a JSON array.
async fn receiver() -> (String, Arc<Mutex<Received>>) {
    let seen = Arc::new(Mutex::new(Received::default()));
    let record = |seen: Arc<Mutex<Received>>| {
        move |headers: HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .requests
                    .push((headers, body));
            }
        }
    };
    let tokens = {
        let r = record(seen.clone());
        move |h: HeaderMap, b: String| {
            let r = r.clone();
            async move {
                r(h, b).await;
                axum::Json(json!({
                    "zak_token": "zak-from-customer",
                    "join_token": "join-from-customer",
                    "app_privilege_token": "lrt-from-customer",
                    "onbehalf_token": "obf-from-customer",
                    "ignored": 1,
                }))
            }
        }
    };
    let broken = {
        let r = record(seen.clone());
        move |h: HeaderMap, b: String| {
            let r = r.clone();
            async move {
                r(h, b).await;
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    };
    let moved = {
        let r = record(seen.clone());
        move |h: HeaderMap, b: String| {
            let r = r.clone();
            async move {
                r(h, b).await;
                (StatusCode::FOUND, [("location", "/tokens")])
            }
        }
    };
    let list = {
        let r = record(seen.clone());
        move |h: HeaderMap, b: String| {
            let r = r.clone();
            async move {
                r(h, b).await;
                axum::Json(json!(["zak_token"]))
            }
        }
    };
    let router = axum::Router::new()
        .route("/tokens", axum::routing::post(tokens))
        .route("/broken", axum::routing::post(broken))
        .route("/moved", axum::routing::post(moved))
        .route("/list", axum::routing::post(list));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}"), seen)
}

async fn project_secret(app: &TestApp) -> Vec<u8> {
    let project = app
        .keeper
        .store
        .project_by_id(&app.project_id)
        .await
        .expect("read")
        .expect("project");
    app.keeper
        .vault
        .open(
            keeper::vault::Slot::project_webhook_secret(&project.id),
            &project.webhook_secret,
        )
        .expect("opens")
        .expose_secret()
        .to_vec()
}

async fn callback_tokens_come_from_the_customer_server_signed(backend: Backend) {
    let settings = Settings {
        allow_private_callback_urls: Some(true),
        ..Settings::default()
    };
    let Some((app, _)) = app_with(backend, settings).await else {
        return;
    };
    let (base, seen) = receiver().await;
    let meeting_url = "https://zoom.us/j/123456789?pwd=é";
    let a = join(
        &app,
        json!({
            "meeting_url": meeting_url,
            "sdk_signature": {"role": 0},
            "callback_settings": {"zoom_tokens_url": format!("{base}/tokens")},
        }),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(problems(&a), vec![], "{}", a.text);
    assert_eq!(a.json["zak_token"], "zak-from-customer");
    assert_eq!(a.json["join_token"], "join-from-customer");
    assert_eq!(a.json["app_privilege_token"], "lrt-from-customer");
    assert_eq!(a.json["onbehalf_token"], "obf-from-customer");
    assert!(
        a.json["sdk_signature"]["jwt"].is_string(),
        "ours, not the customer's"
    );

    let (headers, body) = seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .requests
        .pop()
        .expect("the customer was asked");
    assert_eq!(
        body,
        format!(r#"{{"callback_type":"zoom_tokens","meeting_url":"{meeting_url}"}}"#)
    );
    let (expected, _) = keeper::core::signing::sign_payload(
        &project_secret(&app).await,
        &serde_json::from_str(&body).expect("json"),
    );
    assert_eq!(
        headers
            .get("x-webhook-signature")
            .and_then(|v| v.to_str().ok()),
        Some(expected.as_str())
    );

    for (path, needle) in [
        ("/broken", "HTTP 500"),
        ("/moved", "HTTP 302"),
        ("/list", "JSON object"),
    ] {
        let a = join(
            &app,
            json!({"meeting_url": meeting_url,
                   "callback_settings": {"zoom_tokens_url": format!("{base}{path}")}}),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert!(a.json["zak_token"].is_null() && a.json["app_privilege_token"].is_null());
        let p = problems(&a);
        assert!(
            p.iter().any(|(t, c, msg)| t == "callback"
                && c == "callback_failed"
                && msg.contains(needle)),
            "{path}: {p:?}"
        );
    }
    // The redirect was not followed.
    let asked: Vec<String> = seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .requests
        .iter()
        .map(|(_, b)| b.clone())
        .collect();
    assert_eq!(
        asked.len(),
        3,
        "one request per callback, none after the redirect"
    );
}

async fn callbacks_to_private_addresses_are_refused_by_default(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.new_app(CLIENT).await;
    let (base, seen) = receiver().await;
    for url in [
        format!("{base}/tokens"),
        "http://localhost:9/tokens".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "ftp://example.com/tokens".to_owned(),
    ] {
        let a = join(
            &app,
            json!({"meeting_url": "https://zoom.us/j/123456789",
                   "callback_settings": {"zoom_tokens_url": url}}),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.text);
        let p = problems(&a);
        assert!(
            p.iter()
                .any(|(t, c, _)| t == "callback" && c == "callback_url_refused"),
            "{url}: {p:?}"
        );
        assert!(a.json["meeting_id"] == "123456789");
    }
    assert!(seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .requests
        .is_empty());
}

fn hmac_b64(secret: &[u8], message: &[u8]) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(message);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{name} missing: {headers:?}"))
}

async fn callbacks_carry_standard_webhooks_signatures_with_both_secrets_in_a_rotation(
    backend: Backend,
) {
    let settings = Settings {
        allow_private_callback_urls: Some(true),
        ..Settings::default()
    };
    let Some((app, _)) = app_with(backend, settings).await else {
        return;
    };
    let (base, seen) = receiver().await;
    let ask = || {
        join(
            &app,
            json!({"meeting_url": "https://zoom.us/j/123456789",
                   "callback_settings": {"zoom_tokens_url": format!("{base}/tokens")}}),
        )
    };
    let last = || {
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .requests
            .pop()
            .expect("the customer was asked")
    };
    let old = project_secret(&app).await;
    let a = ask().await;
    assert_eq!(problems(&a), vec![], "{}", a.text);
    let (headers, body) = last();
    let id = header_text(&headers, "webhook-id").to_owned();
    let ts = header_text(&headers, "webhook-timestamp").to_owned();
    let now = chrono::Utc::now().timestamp();
    assert!((now - ts.parse::<i64>().expect("unix seconds")).abs() < 60);
    let signed = format!("{id}.{ts}.{body}");
    assert_eq!(
        header_text(&headers, "webhook-signature"),
        format!("v1,{}", hmac_b64(&old, signed.as_bytes()))
    );
    assert_eq!(
        header_text(&headers, "x-webhook-signature"),
        hmac_b64(&old, body.as_bytes())
    );

    // During a rotation's grace period both secrets sign.
    let r = app
        .send(app.request(Method::POST, "/api/v1/webhook_secret/rotate"))
        .await;
    assert!(r.status < 300, "{}", r.text);
    let new = project_secret(&app).await;
    assert_ne!(new, old);
    let a = ask().await;
    assert_eq!(problems(&a), vec![], "{}", a.text);
    let (headers, body) = last();
    let id2 = header_text(&headers, "webhook-id").to_owned();
    assert_ne!(id2, id, "a new id per callback");
    let ts = header_text(&headers, "webhook-timestamp");
    let signed = format!("{id2}.{ts}.{body}");
    assert_eq!(
        header_text(&headers, "webhook-signature"),
        format!(
            "v1,{} v1,{}",
            hmac_b64(&new, signed.as_bytes()),
            hmac_b64(&old, signed.as_bytes())
        )
    );
    assert_eq!(
        header_text(&headers, "x-webhook-signature"),
        hmac_b64(&new, body.as_bytes())
    );
}

async fn plain_http_callbacks_are_refused_by_default(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.new_app(CLIENT).await;
    // A public address, so only the scheme is wrong.
    let a = join(
        &app,
        json!({"meeting_url": "https://zoom.us/j/123456789",
               "callback_settings": {"zoom_tokens_url": "http://93.184.216.34/tokens"}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let p = problems(&a);
    assert!(
        p.iter().any(|(t, c, msg)| t == "callback"
            && c == "callback_url_refused"
            && msg.contains("https://")),
        "{p:?}"
    );
}

async fn a_personal_link_is_found_among_many_newer_lookalikes(backend: Backend) {
    let Some((app, zoa)) = app_with(backend, Settings::default()).await else {
        return;
    };
    let set_link = |id: String, pmi: u64, url: String| {
        let app = &app;
        let zoa = zoa.clone();
        async move {
            app.keeper
                .store
                .apply_meeting_change(&MeetingIndexChange::ReplacePmi {
                    row: MeetingRow {
                        project_id: app.project_id.clone(),
                        app_id: zoa,
                        meeting_id: pmi.to_string(),
                        connection_id: id,
                        source: MeetingSource::Pmi,
                        topic: None,
                        start_time: None,
                        synced_at: chrono::Utc::now(),
                        host_user_id: None,
                    },
                    personal_meeting_url: Some(url),
                })
                .await
                .expect("personal link stored");
        }
    };
    let (host, pmi) = zoom_user(&app).await;
    let id = connect(&app, &host, json!({})).await;
    set_link(
        id,
        pmi,
        "https://acme.zoom.us/my/Host.Room?pwd=roompass".into(),
    )
    .await;
    // 25 newer users whose links merely contain `/my/host.room`.
    for i in 0..25 {
        let (user, pmi) = zoom_user(&app).await;
        let id = connect(&app, &user, json!({})).await;
        let url = match i % 3 {
            0 => format!("https://zoom.us/my/host.room{i}"),
            1 => format!("https://zoom.us/my/host.room.{i}?pwd=x"),
            _ => format!("https://zoom.us/my/host.room-{i}"),
        };
        set_link(id, pmi, url).await;
    }
    let a = join(&app, json!({"meeting_url": "https://zoom.us/my/host.room"})).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["meeting_id"], pmi.to_string());
    assert_eq!(a.json["meeting_password"], "roompass");
    // A link that is only a prefix of stored ones names nobody.
    join(&app, json!({"meeting_url": "https://zoom.us/my/host.roo"}))
        .await
        .assert_error(400, "unknown_personal_link");
}

/// Zoom refuses the local recording token while the host's "Local recording"
/// setting is off (400, code 3000 "Not allowed to start local recording"): the
/// problem row tells the operator which setting to change.
async fn a_host_with_local_recording_off_gets_a_problem_naming_the_setting(backend: Backend) {
    let Some((app, _)) = app_with(backend, Settings::default()).await else {
        return;
    };
    let host = app
        .sim
        .control()
        .create_user(&SimUser {
            local_recording: Some(false),
            ..Default::default()
        })
        .await
        .expect("sim user")
        .id;
    let m = meeting(&app, &host).await;
    let host_id = connect(&app, &host, json!({})).await;
    sync(&app).await;
    let a = join(
        &app,
        json!({"meeting_url": format!("https://zoom.us/j/{m}")}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.json["app_privilege_token"].is_null(), "{}", a.text);
    let p = problems(&a);
    assert!(
        p.iter().any(|(t, c, msg)| t == "app_privilege_token"
            && c == "local_recording_disabled"
            && msg.contains(&host_id)
            && msg.contains("Local recording")
            && msg.contains("Zoom web portal")),
        "{p:?}"
    );
    // Turned on, the same request gets the token.
    app.sim
        .control()
        .update_user(
            &host,
            &zoom_sim::SimUserPatch {
                local_recording: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("patch user");
    let a = join(
        &app,
        json!({"meeting_url": format!("https://zoom.us/j/{m}")}),
    )
    .await;
    assert_eq!(problems(&a), vec![], "{}", a.text);
    assert_eq!(
        info(&app, &a.json["app_privilege_token"]).await.token_type,
        "local_recording"
    );
}

/// Attendee's older guide lets a bot name its connection (`zoom_oauth_connection_id`):
/// the local recording token is minted with it, the meeting index aside; Zoom
/// refuses it to a connection that does not host the meeting.
async fn a_named_connection_mints_the_local_recording_token_without_the_index(backend: Backend) {
    let Some((app, _)) = app_with(backend, Settings::default()).await else {
        return;
    };
    let (host, _) = zoom_user(&app).await;
    let (other, _) = zoom_user(&app).await;
    let host_connection = connect(&app, &host, json!({})).await;
    let other_connection = connect(&app, &other, json!({})).await;
    // Made after the connection, with no webhook and no sync: the index knows nothing.
    let m = meeting(&app, &host).await;
    let url = format!("https://zoom.us/j/{m}");
    let unnamed = join(&app, json!({"meeting_url": url})).await;
    assert_eq!(unnamed.json["app_privilege_token"], Value::Null);
    assert_eq!(problems(&unnamed)[0].1, "no_host_connection");

    let named = join(
        &app,
        json!({"meeting_url": url, "zoom_oauth_connection_id": host_connection}),
    )
    .await;
    assert_eq!(named.status, 200, "{}", named.text);
    assert_eq!(named.json["problems"], json!([]), "{}", named.text);
    let token = info(&app, &named.json["app_privilege_token"]).await;
    assert_eq!(token.token_type, "local_recording");
    assert_eq!(token.meeting_id, Some(m));
    assert_eq!(token.user_id.as_deref(), Some(host.as_str()));

    // Not the host: Zoom says no, and the problem says what to do.
    let wrong = join(
        &app,
        json!({"meeting_url": url, "zoom_oauth_connection_id": other_connection}),
    )
    .await;
    assert_eq!(wrong.status, 200, "{}", wrong.text);
    assert_eq!(wrong.json["app_privilege_token"], Value::Null);
    let (token, code, message) = problems(&wrong).remove(0);
    assert_eq!(
        (token.as_str(), code.as_str()),
        ("app_privilege_token", "not_meeting_host")
    );
    assert!(
        message.contains(&other_connection) && message.contains("host"),
        "{message}"
    );

    // Unknown, another project's, and malformed ids.
    let unknown = join(
        &app,
        json!({"meeting_url": url, "zoom_oauth_connection_id": "zoc_AAAAAAAAAAAAAAAA"}),
    )
    .await;
    assert_eq!(problems(&unknown)[0].1, "no_connection");
    for bad in [
        json!("zoc_short"),
        json!(""),
        json!(7),
        json!("zoc_AAAA\u{0}AAAAAAAAAAA"),
    ] {
        let a = join(
            &app,
            json!({"meeting_url": url, "zoom_oauth_connection_id": bad}),
        )
        .await;
        assert_eq!(a.status, 400, "{bad}: {}", a.text);
    }
    let malformed = join(
        &app,
        json!({"meeting_url": url, "zoom_oauth_connection_id": "nope"}),
    )
    .await;
    assert!(
        malformed.json["fields"]["zoom_oauth_connection_id"].is_array(),
        "{}",
        malformed.text
    );
}
