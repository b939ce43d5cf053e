//! Bot platforms (DESIGN.md §11) on SQLite and PostgreSQL against the Zoom
//! simulator: a fake Attendee and a fake Recall ask for tokens exactly as those
//! platforms do, and the simulator says who minted each token for which meeting.
//!
//! Where the wire formats come from:
//! - Attendee (attendee-labs/attendee, bots/external_callback_utils.py and
//!   bots/webhook_utils.py): one POST with `requests`' `json=` body — Python's
//!   `json.dumps` defaults: `", "`/`": "` separators, `\uXXXX` escapes, insertion
//!   order — and `X-Webhook-Signature` = base64 HMAC-SHA256, keyed with the raw
//!   32-byte project secret (shown base64 in Attendee), over
//!   `json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))`.
//!   The fake below writes both forms by hand following those rules; the canonical
//!   serialiser itself is checked against Python-computed vectors in
//!   `core::signing`'s unit tests.
//! - Recall (docs.recall.ai "Authenticating requests from Recall.ai", and its
//!   sample app verify_requests_from_recall): GET with Standard Webhooks headers,
//!   HMAC-SHA256 over `"{webhook-id}.{webhook-timestamp}."` (empty body) keyed with
//!   the base64 part of `whsec_…`; answers are the raw token as text, 404 for no
//!   join token.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use keeper::config::Settings;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;
use testkit::{on_both_databases, spawn_app_with, Answer, Backend, TestApp};
use zoom_sim::{SimMeeting, SimTokenInfo, SimUser};

on_both_databases!(
    attendee_gets_each_token_from_the_right_connection,
    attendee_requests_not_signed_by_attendee_are_refused_and_mint_nothing,
    recall_signed_callbacks_answer_raw_tokens,
    recall_replays_and_stale_timestamps_are_refused,
    a_replayed_message_id_is_answered_once_under_concurrency,
    recall_without_a_secret_uses_a_query_token_shown_once,
    bot_platform_input_is_validated,
    the_project_default_zak_user_mints_zaks,
    zoomkeeper_does_not_launch_bots,
    hostile_callback_input_gets_a_clear_answer,
    join_tokens_mint_one_onbehalf_token_per_named_user,
);

const CLIENT: &str = "bots-client";
/// Bytes 0..31, as Attendee shows a project's webhook secret.
const ATTENDEE_SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The Standard Webhooks specification's example secret.
const RECALL_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn app_with_zoom_app(backend: Backend) -> Option<TestApp> {
    let app = spawn_app_with(
        backend,
        Settings {
            rate_limit_per_second: Some(1000.0),
            rate_limit_burst: Some(1000),
            ..Settings::default()
        },
    )
    .await?;
    app.new_app(CLIENT).await;
    Some(app)
}

async fn zoom_user(app: &TestApp) -> String {
    app.sim
        .control()
        .create_user(&SimUser::default())
        .await
        .expect("sim user")
        .id
}

async fn meeting(app: &TestApp, host: &str) -> u64 {
    app.sim
        .control()
        .create_meeting(host, &SimMeeting::default())
        .await
        .expect("sim meeting")
        .id
}

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

async fn create_platform(app: &TestApp, body: Value) -> Answer {
    app.send(
        app.request(Method::POST, "/api/v1/bot_platforms")
            .json(&body),
    )
    .await
}

async fn platform(app: &TestApp, body: Value) -> Value {
    let a = create_platform(app, body).await;
    assert_eq!(a.status, 201, "{}", a.text);
    a.json
}

async fn info(app: &TestApp, token: &str) -> SimTokenInfo {
    app.sim
        .control()
        .token_info(token)
        .await
        .expect("token info")
        .expect("a token the simulator minted")
}

fn hmac_b64(key: &[u8], message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("key");
    mac.update(message);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// What Attendee sends for bot `bot_abcdefghijklmnop` in meeting `m` with metadata
/// naming `user`: (the body as `requests` writes it, the string Attendee signs).
fn attendee_payload(m: u64, user: &str) -> (String, String) {
    attendee_payload_with(m, "zoom_user_id", user)
}

/// Like [`attendee_payload`], the user under metadata key `key`.
fn attendee_payload_with(m: u64, key: &str, user: &str) -> (String, String) {
    // Insertion order as Attendee builds the payload; metadata keys unsorted, a
    // number, and non-ASCII text Python escapes in the body but not in what it signs.
    let sent = format!(
        r#"{{"bot_id": "bot_abcdefghijklmnop", "bot_metadata": {{"team": "Zo\u00eb \u5c71\u7530", "{key}": "{user}", "n": 3}}, "callback_type": "zoom_tokens", "meeting_url": "https://us05web.zoom.us/j/{m}?pwd=x"}}"#
    );
    // Python sorts the keys by code point.
    let mut metadata = [
        ("n".to_owned(), "3".to_owned()),
        ("team".to_owned(), r#""Zoë 山田""#.to_owned()),
        (key.to_owned(), format!(r#""{user}""#)),
    ];
    metadata.sort();
    let metadata = metadata
        .iter()
        .map(|(k, v)| format!(r#""{k}":{v}"#))
        .collect::<Vec<_>>()
        .join(",");
    let signed = format!(
        r#"{{"bot_id":"bot_abcdefghijklmnop","bot_metadata":{{{metadata}}},"callback_type":"zoom_tokens","meeting_url":"https://us05web.zoom.us/j/{m}?pwd=x"}}"#
    );
    (sent, signed)
}

/// Posts `body` to `url` as Attendee does, signed over `signed` with `secret`.
async fn attendee_post(app: &TestApp, url: &str, body: &str, signature: Option<String>) -> Answer {
    let mut request = app
        .http
        .post(url)
        .header("Content-Type", "application/json")
        .header("User-Agent", "Attendee-Callback/1.0")
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header("X-Webhook-Signature", signature);
    }
    app.send(request).await
}

fn attendee_signature(signed: &str) -> String {
    hmac_b64(
        &STANDARD.decode(ATTENDEE_SECRET).expect("base64"),
        signed.as_bytes(),
    )
}

/// GETs `url` as Recall does, signed with message id `id` at `timestamp`.
async fn recall_get(app: &TestApp, url: &str, id: &str, timestamp: i64, svix: bool) -> Answer {
    let key = STANDARD
        .decode(RECALL_SECRET.trim_start_matches("whsec_"))
        .expect("base64");
    let signature = format!(
        "v1,{}",
        hmac_b64(&key, format!("{id}.{timestamp}.").as_bytes())
    );
    let prefix = if svix { "svix" } else { "webhook" };
    app.send(
        app.http
            .get(url)
            .header(format!("{prefix}-id"), id)
            .header(format!("{prefix}-timestamp"), timestamp.to_string())
            .header(format!("{prefix}-signature"), signature),
    )
    .await
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The platform's call log once it holds `n` calls (it is written just after each
/// answer), newest first.
async fn calls(app: &TestApp, platform_id: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let a = app
            .send(app.request(
                Method::GET,
                &format!("/api/v1/bot_platforms/{platform_id}/calls"),
            ))
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        let calls = a.json["results"].as_array().expect("results").clone();
        if calls.len() >= n || std::time::Instant::now() > deadline {
            return calls;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn metrics(app: &TestApp) -> String {
    app.send(app.http.get(app.url("/metrics"))).await.text
}

async fn attendee_gets_each_token_from_the_right_connection(backend: Backend) {
    let Some(app) = app_with_zoom_app(backend).await else {
        return;
    };
    let host = zoom_user(&app).await;
    let owner = zoom_user(&app).await;
    let other = zoom_user(&app).await;
    let zak_user = zoom_user(&app).await;
    let m = meeting(&app, &host).await;
    let host_connection = connect(&app, &host, json!({})).await;
    for user in [&owner, &other] {
        connect(&app, user, json!({"is_onbehalf_token_supported": true})).await;
    }
    connect(&app, &zak_user, json!({})).await;
    sync(&app).await;
    let p = platform(
        &app,
        json!({
            "platform": "attendee",
            "verification_secret": ATTENDEE_SECRET,
            "zak_user_id": zak_user,
            "onbehalf_metadata_key": "zoom_user_id",
        }),
    )
    .await;
    assert_eq!(p["verification"], "attendee_signature");
    assert!(p.get("query_token").is_none());
    let url = p["urls"]["zoom_tokens_url"]
        .as_str()
        .expect("url")
        .to_owned();
    assert_eq!(
        url,
        app.url(&format!(
            "/bot_platforms/{}/attendee/zoom_tokens",
            p["id"].as_str().expect("id")
        ))
    );

    // The onbehalf user from the bot's metadata.
    let (sent, signed) = attendee_payload(m, &owner);
    let a = attendee_post(&app, &url, &sent, Some(attendee_signature(&signed))).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["problems"], json!([]), "{}", a.text);
    assert!(a.json["join_token"].is_null());
    let lrt = info(&app, a.json["app_privilege_token"].as_str().expect("token")).await;
    assert_eq!(
        (
            lrt.token_type.as_str(),
            lrt.user_id.as_deref(),
            lrt.meeting_id
        ),
        ("local_recording", Some(host.as_str()), Some(m)),
        "the local recording token is the host's, for this meeting"
    );
    let obf = info(&app, a.json["onbehalf_token"].as_str().expect("token")).await;
    assert_eq!(
        (
            obf.token_type.as_str(),
            obf.user_id.as_deref(),
            obf.meeting_id
        ),
        ("onbehalf", Some(owner.as_str()), Some(m))
    );
    let zak = info(&app, a.json["zak_token"].as_str().expect("token")).await;
    assert_eq!(
        (zak.token_type.as_str(), zak.user_id.as_deref()),
        ("zak", Some(zak_user.as_str()))
    );

    // The URL's users win over the metadata: two tokens, comma-separated, in order.
    let a = attendee_post(
        &app,
        &format!("{url}?onbehalf_user_id={other},{owner}"),
        &sent,
        Some(attendee_signature(&signed)),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let tokens: Vec<&str> = a.json["onbehalf_token"]
        .as_str()
        .expect("tokens")
        .split(',')
        .collect();
    assert_eq!(tokens.len(), 2, "{}", a.text);
    assert_eq!(
        info(&app, tokens[0]).await.user_id.as_deref(),
        Some(other.as_str())
    );
    assert_eq!(
        info(&app, tokens[1]).await.user_id.as_deref(),
        Some(owner.as_str())
    );

    // No user named anywhere: the host, who lacks the onbehalf capability.
    let (sent, signed) = attendee_payload_with(m, "someone_else", &owner);
    let a = attendee_post(&app, &url, &sent, Some(attendee_signature(&signed))).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.json["onbehalf_token"].is_null());
    assert!(a.json["app_privilege_token"].is_string());
    assert_eq!(
        a.json["problems"][0]["token"], "onbehalf_token",
        "{}",
        a.text
    );
    assert_eq!(a.json["problems"][0]["code"], "capability_not_enabled");

    // The platform's log and the host's events tell what happened, without tokens.
    let log = calls(&app, p["id"].as_str().expect("id"), 3).await;
    assert_eq!(log.len(), 3);
    assert_eq!(log[0]["outcome"], "partial");
    assert_eq!(log[2]["outcome"], "minted");
    assert_eq!(log[2]["endpoint"], "attendee_zoom_tokens");
    assert_eq!(log[2]["status"], 200);
    assert_eq!(log[2]["bot_id"], "bot_abcdefghijklmnop");
    assert_eq!(log[2]["meeting_id"], m.to_string());
    assert_eq!(
        log[2]["minted"],
        json!(["app_privilege_token", "zak_token", "onbehalf_token"])
    );
    let events = app
        .send(app.request(
            Method::GET,
            &format!("/api/v1/zoom_oauth_connections/{host_connection}/events"),
        ))
        .await;
    let message = events.json["results"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["kind"] == "bot_platform_call")
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .expect("a bot_platform_call event on the host's connection");
    assert!(message.contains("bot_abcdefghijklmnop"), "{message}");
    assert!(message.contains("app_privilege_token"), "{message}");
    assert!(metrics(&app)
        .await
        .contains("zoomkeeper_bot_platform_calls_total{endpoint=\"attendee_zoom_tokens\",outcome=\"minted\"} 2"));
    let logs = testkit::captured_logs();
    for token in tokens {
        assert!(!logs.contains(token));
        assert!(!log.iter().any(|c| c.to_string().contains(token)));
    }
}

async fn attendee_requests_not_signed_by_attendee_are_refused_and_mint_nothing(backend: Backend) {
    let Some(app) = app_with_zoom_app(backend).await else {
        return;
    };
    let host = zoom_user(&app).await;
    let m = meeting(&app, &host).await;
    connect(&app, &host, json!({})).await;
    sync(&app).await;
    let p = platform(
        &app,
        json!({"platform": "attendee", "verification_secret": ATTENDEE_SECRET}),
    )
    .await;
    let url = p["urls"]["zoom_tokens_url"]
        .as_str()
        .expect("url")
        .to_owned();
    let (sent, signed) = attendee_payload(m, &host);
    let before = app.sim_stats().await.api_calls;

    // Tampered body (another meeting), no header, another secret, a signature of the
    // raw bytes instead of the canonical form.
    let tampered = sent.replace(&m.to_string(), "12345678901");
    let other_secret = hmac_b64(&[7u8; 32], signed.as_bytes());
    let of_raw = hmac_b64(
        &STANDARD.decode(ATTENDEE_SECRET).expect("b64"),
        sent.as_bytes(),
    );
    for (body, signature, code) in [
        (
            &tampered,
            Some(attendee_signature(&signed)),
            "bad_signature",
        ),
        (&sent, None, "missing_signature"),
        (&sent, Some(other_secret), "bad_signature"),
        (&sent, Some(of_raw), "bad_signature"),
    ] {
        let a = attendee_post(&app, &url, body, signature).await;
        a.assert_error(401, code);
        assert!(a.json["error"]
            .as_str()
            .expect("error")
            .starts_with("Refused"));
    }
    assert_eq!(
        app.sim_stats().await.api_calls,
        before,
        "nothing was minted"
    );
    let log = calls(&app, p["id"].as_str().expect("id"), 4).await;
    assert_eq!(log.len(), 4);
    assert!(log
        .iter()
        .all(|c| c["status"] == 401 && c["minted"] == json!([])));
    assert!(metrics(&app).await.contains(
        "zoomkeeper_bot_platform_calls_total{endpoint=\"attendee_zoom_tokens\",outcome=\"bad_signature\"} 3"
    ));

    // Signed, but not the zoom_tokens callback, or without a meeting link: 400.
    for body in [
        r#"{"bot_id": "bot_x", "callback_type": "other", "meeting_url": "https://zoom.us/j/123456789"}"#,
        r#"{"bot_id": "bot_x", "callback_type": "zoom_tokens"}"#,
    ] {
        let canonical = keeper::core::signing::python_canonical_json(body).expect("json");
        let a = attendee_post(&app, &url, body, Some(attendee_signature(&canonical))).await;
        a.assert_error(400, "invalid_body");
    }
    // Not JSON at all.
    attendee_post(&app, &url, "not json", Some("x".to_owned()))
        .await
        .assert_error(400, "invalid_body");

    // Unknown ids, malformed ids, and a Recall platform's id: 404.
    let recall = platform(&app, json!({"platform": "recall"})).await;
    for id in [
        "bpl_0000000000000000",
        "nope",
        recall["id"].as_str().expect("id"),
    ] {
        let a = attendee_post(
            &app,
            &app.url(&format!("/bot_platforms/{id}/attendee/zoom_tokens")),
            &sent,
            Some(attendee_signature(&signed)),
        )
        .await;
        a.assert_error(404, "not_found");
    }
    assert_eq!(app.sim_stats().await.api_calls, before);
}

async fn recall_platform(app: &TestApp) -> Value {
    platform(
        app,
        json!({"platform": "recall", "name": "Recall EU", "verification_secret": RECALL_SECRET}),
    )
    .await
}

async fn recall_signed_callbacks_answer_raw_tokens(backend: Backend) {
    let Some(app) = app_with_zoom_app(backend).await else {
        return;
    };
    let host = zoom_user(&app).await;
    let bot_user = zoom_user(&app).await;
    let m = meeting(&app, &host).await;
    connect(&app, &host, json!({"is_onbehalf_token_supported": true})).await;
    connect(
        &app,
        &bot_user,
        json!({"is_onbehalf_token_supported": true}),
    )
    .await;
    sync(&app).await;
    let p = recall_platform(&app).await;
    assert_eq!(p["verification"], "standard_webhooks");
    assert_eq!(p["name"], "Recall EU");
    let urls = &p["urls"];
    let (zak_url, obf_url, join_url) = (
        urls["zak_url"].as_str().expect("zak_url"),
        urls["obf_token_url"].as_str().expect("obf"),
        urls["join_token_url"].as_str().expect("join"),
    );

    let text = |a: &Answer| a.text.clone();
    let a = recall_get(
        &app,
        &format!("{zak_url}?user_id={bot_user}"),
        "msg_1",
        now(),
        false,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.headers["content-type"], "text/plain; charset=utf-8");
    let zak = info(&app, &text(&a)).await;
    assert_eq!(
        (zak.token_type.as_str(), zak.user_id.as_deref()),
        ("zak", Some(bot_user.as_str()))
    );

    // Older workspaces' svix-* header names work too.
    let a = recall_get(
        &app,
        &format!("{obf_url}?meeting_id={m}&user_id={bot_user}"),
        "msg_2",
        now(),
        true,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let obf = info(&app, &text(&a)).await;
    assert_eq!(
        (
            obf.token_type.as_str(),
            obf.user_id.as_deref(),
            obf.meeting_id
        ),
        ("onbehalf", Some(bot_user.as_str()), Some(m))
    );
    // No user: the host's (it has the capability).
    let a = recall_get(
        &app,
        &format!("{obf_url}?meeting_id={m}"),
        "msg_3",
        now(),
        false,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        info(&app, &text(&a)).await.user_id.as_deref(),
        Some(host.as_str())
    );

    let a = recall_get(
        &app,
        &format!("{join_url}?meeting_id={m}"),
        "msg_4",
        now(),
        false,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let join = info(&app, &text(&a)).await;
    assert_eq!(
        (
            join.token_type.as_str(),
            join.user_id.as_deref(),
            join.meeting_id,
            join.bypass_waiting_room
        ),
        ("local_recording", Some(host.as_str()), Some(m), Some(true))
    );

    // No join token for a meeting nobody connected hosts: 404, with the reason.
    let a = recall_get(
        &app,
        &format!("{join_url}?meeting_id=98765432101"),
        "msg_5",
        now(),
        false,
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.text);
    assert!(
        a.text.contains("No connection hosts meeting 98765432101"),
        "{}",
        a.text
    );
    // Meeting-scoped tokens need the meeting; the ZAK needs a user.
    let a = recall_get(&app, obf_url, "msg_6", now(), false).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(a.text.contains("meeting_id"), "{}", a.text);
    let a = recall_get(&app, zak_url, "msg_7", now(), false).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(a.text.contains("user_id"), "{}", a.text);
    let a = recall_get(
        &app,
        &format!("{join_url}?meeting_id=12"),
        "msg_8",
        now(),
        false,
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.text);
    // A user without a connection: 404 naming why.
    let a = recall_get(
        &app,
        &format!("{zak_url}?user_id=nobody"),
        "msg_9",
        now(),
        false,
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.text);
    assert!(a.text.contains("connect that user first"), "{}", a.text);

    let log = calls(&app, p["id"].as_str().expect("id"), 9).await;
    assert_eq!(log.len(), 9);
    assert_eq!(log[0]["endpoint"], "recall_zak");
    assert_eq!(log[0]["status"], 404);
    assert_eq!(log[0]["problems"][0]["code"], "no_connection");
    assert_eq!(log[8]["minted"], json!(["zak_token"]));
}

async fn recall_replays_and_stale_timestamps_are_refused(backend: Backend) {
    let Some(app) = app_with_zoom_app(backend).await else {
        return;
    };
    let user = zoom_user(&app).await;
    connect(&app, &user, json!({})).await;
    let p = recall_platform(&app).await;
    let zak_url = format!(
        "{}?user_id={user}",
        p["urls"]["zak_url"].as_str().expect("url")
    );

    let first = recall_get(&app, &zak_url, "msg_once", now(), false).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let before = app.sim_stats().await.api_calls;
    let replay = recall_get(&app, &zak_url, "msg_once", now(), false).await;
    assert_eq!(replay.status, 401);
    assert!(replay.text.contains("already used"), "{}", replay.text);
    for ts in [now() - 301, now() + 301] {
        let stale = recall_get(&app, &zak_url, &format!("msg_{ts}"), ts, false).await;
        assert_eq!(stale.status, 401);
        assert!(stale.text.contains("5 minutes"), "{}", stale.text);
    }
    // Unsigned, and signed with another secret.
    let unsigned = app.send(app.http.get(&zak_url)).await;
    assert_eq!(unsigned.status, 401);
    assert!(unsigned.text.contains("webhook-id"), "{}", unsigned.text);
    let forged = app
        .send(
            app.http
                .get(&zak_url)
                .header("webhook-id", "msg_forged")
                .header("webhook-timestamp", now().to_string())
                .header(
                    "webhook-signature",
                    format!("v1,{}", hmac_b64(b"another key", b"x")),
                ),
        )
        .await;
    assert_eq!(forged.status, 401);
    assert_eq!(
        app.sim_stats().await.api_calls,
        before,
        "nothing was minted"
    );
    // A forged request does not use up its message id: signed, it still works.
    let genuine = recall_get(&app, &zak_url, "msg_forged", now(), false).await;
    assert_eq!(genuine.status, 200, "{}", genuine.text);

    let text = metrics(&app).await;
    for (outcome, n) in [
        ("replayed", 1),
        ("stale_timestamp", 2),
        ("missing_signature", 1),
        ("bad_signature", 1),
    ] {
        assert!(
            text.contains(&format!(
                "zoomkeeper_bot_platform_calls_total{{endpoint=\"recall_zak\",outcome=\"{outcome}\"}} {n}"
            )),
            "{outcome}: {text}"
        );
    }
}

async fn a_replayed_message_id_is_answered_once_under_concurrency(backend: Backend) {
    let Some(app) = app_with_zoom_app(backend).await else {
        return;
    };
    let user = zoom_user(&app).await;
    connect(&app, &user, json!({})).await;
    let p = recall_platform(&app).await;
    let zak_url = format!(
        "{}?user_id={user}",
        p["urls"]["zak_url"].as_str().expect("url")
    );
    let ts = now();
    let answers = futures::future::join_all(
        (0..12).map(|_| recall_get(&app, &zak_url, "msg_same", ts, false)),
    )
    .await;
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let replayed = answers.iter().filter(|a| a.status == 401).count();
    assert_eq!((ok, replayed), (1, 11), "one answer per signed message id");
}

async fn recall_without_a_secret_uses_a_query_token_shown_once(backend: Backend) {
    let Some(app) = app_with_zoom_app(backend).await else {
        return;
    };
    let user = zoom_user(&app).await;
    connect(&app, &user, json!({})).await;
    let p = platform(&app, json!({"platform": "recall", "zak_user_id": user})).await;
    assert_eq!(p["verification"], "query_token");
    let token = p["query_token"]
        .as_str()
        .expect("shown at creation")
        .to_owned();
    assert!(token.len() >= 40);
    let zak_url = p["urls"]["zak_url"].as_str().expect("url").to_owned();
    assert!(zak_url.ends_with(&format!("?token={token}")), "{zak_url}");

    let a = app.send(app.http.get(&zak_url)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        info(&app, &a.text).await.user_id.as_deref(),
        Some(user.as_str())
    );

    // Later reads never show it.
    let id = p["id"].as_str().expect("id");
    let read = app
        .send(app.request(Method::GET, &format!("/api/v1/bot_platforms/{id}")))
        .await;
    assert!(read.json.get("query_token").is_none());
    assert!(!read.text.contains(&token));
    let base = read.json["urls"]["zak_url"]
        .as_str()
        .expect("url")
        .to_owned();
    assert!(!base.contains('?'));
    for url in [base.clone(), format!("{base}?token=wrong")] {
        let a = app.send(app.http.get(&url)).await;
        assert_eq!(a.status, 401, "{}", a.text);
    }
    // A new token replaces the old one.
    let patched = app
        .send(
            app.request(Method::PATCH, &format!("/api/v1/bot_platforms/{id}"))
                .json(&json!({"verification_secret": null})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    let new_token = patched.json["query_token"].as_str().expect("new token");
    assert_ne!(new_token, token);
    assert_eq!(app.send(app.http.get(&zak_url)).await.status, 401);
    let a = app
        .send(app.http.get(format!("{base}?token={new_token}")))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(!testkit::captured_logs().contains(new_token));
}

async fn bot_platform_input_is_validated(backend: Backend) {
    let Some(app) = app_with_zoom_app(backend).await else {
        return;
    };
    for (body, field) in [
        (json!({"platform": "attendee"}), "verification_secret"),
        (
            json!({"platform": "attendee", "verification_secret": "not base64!"}),
            "verification_secret",
        ),
        (
            json!({"platform": "attendee", "verification_secret": "AAEC"}),
            "verification_secret",
        ),
        (
            json!({"platform": "attendee", "verification_secret": RECALL_SECRET}),
            "verification_secret",
        ),
        (
            json!({"platform": "recall", "verification_secret": ATTENDEE_SECRET}),
            "verification_secret",
        ),
        (
            json!({"platform": "recall", "zoom_oauth_app_id": "zoa_0000000000000000"}),
            "zoom_oauth_app_id",
        ),
        (
            json!({"platform": "recall", "zak_user_id": "a b"}),
            "zak_user_id",
        ),
        (
            json!({"platform": "recall", "zak_user_id": "a\u{0}b"}),
            "zak_user_id",
        ),
        (json!({"platform": "recall", "name": " "}), "name"),
        (json!({"platform": "recall", "name": "a\u{0}b"}), "name"),
        (
            json!({"platform": "recall", "onbehalf_metadata_key": "user"}),
            "onbehalf_metadata_key",
        ),
    ] {
        let a = create_platform(&app, body.clone()).await;
        a.assert_error(400, "invalid_request");
        assert_eq!(a.field_problems(field).len(), 1, "{body}: {}", a.text);
    }
    for body in [
        json!({"platform": "zoom"}),
        json!({}),
        json!({"platform": "recall", "extra": 1}),
    ] {
        let a = create_platform(&app, body.clone()).await;
        assert_eq!(a.status, 400, "{body}: {}", a.text);
    }
    let list = app
        .send(app.request(Method::GET, "/api/v1/bot_platforms"))
        .await;
    assert_eq!(list.json["results"], json!([]), "nothing was created");

    let p = platform(
        &app,
        json!({"platform": "attendee", "verification_secret": ATTENDEE_SECRET}),
    )
    .await;
    let id = p["id"].as_str().expect("id");
    let path = format!("/api/v1/bot_platforms/{id}");
    let patch = |body: Value| app.send(app.request(Method::PATCH, &path).json(&body));
    patch(json!({"verification_secret": null}))
        .await
        .assert_error(400, "invalid_request");
    let a = patch(
        json!({"name": "Attendee prod", "zak_user_id": "u-1", "onbehalf_metadata_key": "who"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        (
            &a.json["name"],
            &a.json["zak_user_id"],
            &a.json["onbehalf_metadata_key"]
        ),
        (&json!("Attendee prod"), &json!("u-1"), &json!("who"))
    );
    let a = patch(json!({"zak_user_id": null})).await;
    assert!(a.json["zak_user_id"].is_null());
    assert_eq!(a.json["name"], "Attendee prod");

    // Another project sees none of it.
    let (_, other_key) = app.other_project("other").await;
    let a = app
        .send(app.request_as(&other_key, Method::GET, &path))
        .await;
    a.assert_error(404, "not_found");
    let a = app
        .send(app.request_as(&other_key, Method::DELETE, &path))
        .await;
    a.assert_error(404, "not_found");

    // Deleted: its URL answers 404.
    let a = app.send(app.request(Method::DELETE, &path)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = attendee_post(
        &app,
        p["urls"]["zoom_tokens_url"].as_str().expect("url"),
        "{}",
        Some("x".into()),
    )
    .await;
    a.assert_error(404, "not_found");
    app.send(app.request(Method::GET, &path))
        .await
        .assert_error(404, "not_found");
}

async fn the_project_default_zak_user_mints_zaks(backend: Backend) {
    let Some(app) = app_with_zoom_app(backend).await else {
        return;
    };
    let zak_user = zoom_user(&app).await;
    let host = zoom_user(&app).await;
    let m = meeting(&app, &host).await;
    connect(&app, &zak_user, json!({})).await;
    let project = app.send(app.request(Method::GET, "/api/v1/project")).await;
    assert!(
        project.json["default_zak_user_id"].is_null(),
        "{}",
        project.text
    );
    app.send(
        app.request(Method::PATCH, "/api/v1/project")
            .json(&json!({"default_zak_user_id": "not valid"})),
    )
    .await
    .assert_error(400, "invalid_request");
    let a = app
        .send(
            app.request(Method::PATCH, "/api/v1/project")
                .json(&json!({"default_zak_user_id": zak_user})),
        )
        .await;
    assert_eq!(
        a.json["default_zak_user_id"],
        zak_user.as_str(),
        "{}",
        a.text
    );

    // Join tokens without a ZAK user get the project's.
    let a = app
        .send(
            app.request(Method::POST, "/api/v1/zoom_join_tokens")
                .json(&json!({"meeting_url": format!("https://zoom.us/j/{m}")})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let zak = info(&app, a.json["zak_token"].as_str().expect("zak")).await;
    assert_eq!(zak.user_id.as_deref(), Some(zak_user.as_str()));
    // And so does Recall's ZAK URL without a user_id.
    let p = platform(&app, json!({"platform": "recall"})).await;
    let a = app
        .send(app.http.get(p["urls"]["zak_url"].as_str().expect("url")))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        info(&app, &a.text).await.user_id.as_deref(),
        Some(zak_user.as_str())
    );
    // Cleared: Recall's ZAK URL needs a user again.
    app.send(
        app.request(Method::PATCH, "/api/v1/project")
            .json(&json!({"default_zak_user_id": null})),
    )
    .await;
    let a = app
        .send(app.http.get(p["urls"]["zak_url"].as_str().expect("url")))
        .await;
    assert_eq!(a.status, 400, "{}", a.text);
}

async fn zoomkeeper_does_not_launch_bots(backend: Backend) {
    let Some(app) = app_with_zoom_app(backend).await else {
        return;
    };
    for (method, path) in [
        (Method::POST, "/api/v1/bots"),
        (Method::GET, "/api/v1/bots/bot_x"),
    ] {
        let a = app
            .send(
                app.request(method, path)
                    .json(&json!({"meeting_url": "https://zoom.us/j/123456789"})),
            )
            .await;
        a.assert_error(404, "bots_not_launched_here");
        assert!(a.json["error"]
            .as_str()
            .expect("error")
            .contains("/api/v1/bot_platforms"));
    }
}

async fn hostile_callback_input_gets_a_clear_answer(backend: Backend) {
    let Some(app) = app_with_zoom_app(backend).await else {
        return;
    };
    let host = zoom_user(&app).await;
    let m = meeting(&app, &host).await;
    connect(&app, &host, json!({})).await;
    sync(&app).await;
    let recall = platform(&app, json!({"platform": "recall"})).await;
    let zak_url = recall["urls"]["zak_url"].as_str().expect("url").to_owned();
    // NUL bytes (PostgreSQL refuses them in text), odd user ids, long bot ids.
    for (query, status) in [
        ("&user_id=a%00b", 400),
        ("&user_id=%20", 400),
        ("&user_id=a,b", 400),
        ("&bot_id=%00x&user_id=nobody", 404),
    ] {
        let a = app.send(app.http.get(format!("{zak_url}{query}"))).await;
        assert_eq!(a.status, status, "{query}: {}", a.text);
    }
    let obf_url = recall["urls"]["obf_token_url"]
        .as_str()
        .expect("url")
        .to_owned();
    for query in [
        "&meeting_id=%00",
        "&meeting_id=1e9",
        &format!("&meeting_id={m}&user_id=a,b"),
    ] {
        let a = app.send(app.http.get(format!("{obf_url}{query}"))).await;
        assert_eq!(a.status, 400, "{query}: {}", a.text);
    }

    let attendee = platform(
        &app,
        json!({"platform": "attendee", "verification_secret": ATTENDEE_SECRET, "onbehalf_metadata_key": "who"}),
    )
    .await;
    let url = attendee["urls"]["zoom_tokens_url"]
        .as_str()
        .expect("url")
        .to_owned();
    let body = json!({
        "bot_id": format!("bot_\u{0}{}", "x".repeat(5000)),
        "bot_metadata": {"who": "a\u{0}b"},
        "callback_type": "zoom_tokens",
        "meeting_url": format!("https://zoom.us/j/{m}"),
    })
    .to_string();
    let canonical = keeper::core::signing::python_canonical_json(&body).expect("json");
    let a = attendee_post(
        &app,
        &format!("{url}?zak_user_id=%00"),
        &body,
        Some(attendee_signature(&canonical)),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.json["app_privilege_token"].is_string(), "{}", a.text);
    let codes: Vec<&str> = a.json["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| p["code"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(codes, ["invalid_user_id", "invalid_user_id"], "{}", a.text);
    let log = calls(&app, attendee["id"].as_str().expect("id"), 1).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["bot_id"].as_str().expect("bot id").len(), 100);
    let a = attendee_post(&app, &url, "[1, 2]", Some(attendee_signature("[1,2]"))).await;
    a.assert_error(400, "invalid_body");
}

/// `POST /api/v1/zoom_join_tokens` takes several onbehalf users, as newer Attendee
/// does: one token per user that gets one, comma-separated, and a problem per user
/// that does not.
async fn join_tokens_mint_one_onbehalf_token_per_named_user(backend: Backend) {
    let Some(app) = app_with_zoom_app(backend).await else {
        return;
    };
    let host = zoom_user(&app).await;
    let (a_user, b_user, without) = (
        zoom_user(&app).await,
        zoom_user(&app).await,
        zoom_user(&app).await,
    );
    let m = meeting(&app, &host).await;
    for user in [&a_user, &b_user] {
        connect(&app, user, json!({"is_onbehalf_token_supported": true})).await;
    }
    connect(&app, &without, json!({})).await;
    let a = app
        .send(app.request(Method::POST, "/api/v1/zoom_join_tokens").json(&json!({
            "meeting_url": format!("https://zoom.us/j/{m}"),
            "onbehalf_token": {"zoom_oauth_connection_user_id": format!("{a_user}, {without},{b_user},nobody,{a_user}")},
        })))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let tokens: Vec<&str> = a.json["onbehalf_token"]
        .as_str()
        .expect("tokens")
        .split(',')
        .collect();
    assert_eq!(tokens.len(), 2, "{}", a.text);
    for (token, user) in tokens.iter().zip([&a_user, &b_user]) {
        let obf = info(&app, token).await;
        assert_eq!(
            (obf.user_id.as_deref(), obf.meeting_id),
            (Some(user.as_str()), Some(m))
        );
    }
    let onbehalf_problems: Vec<&str> = a.json["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter(|p| p["token"] == "onbehalf_token")
        .map(|p| p["code"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        onbehalf_problems,
        ["capability_not_enabled", "no_connection"],
        "{}",
        a.text
    );
}
