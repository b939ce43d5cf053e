//! The Recall-compatible API (`/api/v2`, DESIGN.md §14), run on SQLite and PostgreSQL
//! against the Zoom simulator, with the request bodies and response fields of
//! Recall's published reference. Sources (docs.recall.ai, as of 2025–2026):
//! - apps: `reference/zoom_oauth_apps_{create,list,retrieve,partial_update,destroy}`;
//! - credentials: `reference/zoom_oauth_credentials_{create,list,retrieve,destroy,
//!   access_token_retrieve,sync_meetings_create,validate_create}`;
//! - mappings and logs: `reference/zoom_meetings_to_credentials_list`,
//!   `reference/zoom_oauth_credential_logs_list`, `reference/zoom_oauth_app_logs_list`;
//! - the create body with a bare `{code, redirect_uri}` and the re-authorisation rule
//!   ("Recall will update the existing credential instead of creating a new"):
//!   `docs/recall-managed-oauth` and `docs/step-2-recall-managed-oauth`;
//! - `{"detail": "Invalid token."}` for a bad key: `reference/authentication`, and
//!   the `Token` prefix being optional.

use std::time::Duration;

use futures::StreamExt as _;
use reqwest::Method;
use serde_json::{json, Value};
use testkit::{on_both_databases, spawn_app, Answer, Backend, TestApp, REDIRECT_URI};
use zoom_sim::SimMeeting;

on_both_databases!(
    apps_in_recall_shapes,
    app_filters_ordering_and_pages,
    the_uuid_webhook_url_validates_and_the_app_log_tells,
    credential_lifecycle,
    reauthorising_a_user_updates_the_credential_in_place,
    a_storm_of_access_token_calls_after_expiry_makes_one_refresh,
    an_unhealthy_credential_is_explained_and_validate_tells_the_truth,
    meeting_sync_status_filter_agrees_with_what_is_shown,
    objects_are_shared_with_api_v1,
    bad_input_gets_detail_and_changes_nothing,
    other_projects_objects_are_invisible,
    openapi_documents_v2_under_its_own_tag,
);

const CLIENT: &str = "recall-client";
const APPS: &str = "/api/v2/zoom-oauth-apps/";
const CREDENTIALS: &str = "/api/v2/zoom-oauth-credentials/";

fn secret_of(client_id: &str) -> String {
    format!("secret-of-{client_id}")
}

async fn v2(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Answer {
    let request = app.request(method, path);
    app.send(match body {
        Some(body) => request.json(&body),
        None => request,
    })
    .await
}

/// Asserts Recall's error shape with this status; returns the detail.
fn detail(a: &Answer, status: u16) -> String {
    assert_eq!(a.status, status, "{}", a.text);
    assert!(a.json.get("error").is_none(), "{}", a.text);
    let detail = a.json["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no detail: {}", a.text));
    assert!(detail.len() > 10, "{}", a.text);
    detail.to_owned()
}

fn is_uuid(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 36 && uuid::Uuid::try_parse(s).is_ok())
}

fn is_timestamp(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

fn str_of(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
        .to_owned()
}

/// Registers `client_id` at Zoom and creates it with Recall's create body; returns
/// the answer's JSON.
async fn recall_app(app: &TestApp, client_id: &str, kind: &str) -> Value {
    app.zoom_app(client_id, &secret_of(client_id)).await;
    let a = v2(
        app,
        Method::POST,
        APPS,
        Some(json!({
            "kind": kind,
            "client_id": client_id,
            "client_secret": secret_of(client_id),
            "webhook_secret": format!("webhook-secret-of-{client_id}"),
        })),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text);
    a.json
}

/// Recall's create body for `user` authorising `client_id`.
async fn credential_body(app: &TestApp, client_id: &str, app_uuid: &str, user: &str) -> Value {
    let code = app
        .auth_code(client_id, user, Some(testkit::scopes_asked_for(&json!({}))))
        .await;
    json!({
        "oauth_app": app_uuid,
        "authorization_code": {"code": code, "redirect_uri": REDIRECT_URI},
    })
}

async fn create_credential(app: &TestApp, app_uuid: &str, user: &str) -> Answer {
    let body = credential_body(app, CLIENT, app_uuid, user).await;
    v2(app, Method::POST, CREDENTIALS, Some(body)).await
}

/// A started app with one Zoom app made through `/api/v2`; returns (app, its JSON).
async fn started(backend: Backend) -> Option<(TestApp, Value)> {
    let app = spawn_app(backend).await?;
    let zoa = recall_app(&app, CLIENT, "user_level").await;
    Some((app, zoa))
}

/// A connected user: (Zoom user id, the credential's JSON).
async fn connected(app: &TestApp, zoa: &Value) -> (String, Value) {
    let user = app.zoom_user(None).await;
    let a = create_credential(app, &str_of(zoa, "id"), &user).await;
    assert_eq!(a.status, 201, "{}", a.text);
    (user, a.json)
}

fn results(a: &Answer) -> Vec<Value> {
    assert_eq!(a.status, 200, "{}", a.text);
    a.json["results"].as_array().expect("results").clone()
}

async fn list(app: &TestApp, path: &str) -> Vec<Value> {
    results(&v2(app, Method::GET, path, None).await)
}

fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(|v| str_of(v, "id")).collect()
}

async fn apps_in_recall_shapes(backend: Backend) {
    let Some((app, zoa)) = started(backend).await else {
        return;
    };
    // Recall's fields, no secret back.
    let id = str_of(&zoa, "id");
    assert!(is_uuid(&zoa["id"]), "{zoa}");
    assert_eq!(zoa["kind"], "user_level");
    assert_eq!(zoa["client_id"], CLIENT);
    assert_eq!(zoa["webhook_last_validation"], Value::Null);
    assert!(is_timestamp(&zoa["created_at"]), "{zoa}");
    assert!(zoa.get("client_secret").is_none() && zoa.get("webhook_secret").is_none());
    assert!(!zoa.to_string().contains("secret-of"), "{zoa}");
    assert_eq!(
        zoa["webhook_url"],
        app.url(&format!("/api/v2/zoom-oauth-apps/{id}/webhook"))
    );

    // Retrieve, with and without the trailing slash; the bare key is accepted too.
    let got = v2(&app, Method::GET, &format!("{APPS}{id}/"), None).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.json, zoa);
    let bare = app
        .send(
            app.http
                .get(app.url(&format!("{APPS}{id}")))
                .header("authorization", app.key.clone()),
        )
        .await;
    assert_eq!(bare.status, 200, "{}", bare.text);
    assert_eq!(bare.json, zoa);
    assert_eq!(ids(&list(&app, APPS).await), vec![id.clone()]);

    // PATCH: only the secrets; a new client secret is checked at Zoom first.
    app.zoom_app(CLIENT, "rotated-secret").await;
    let patched = v2(
        &app,
        Method::PATCH,
        &format!("{APPS}{id}/"),
        Some(json!({"client_secret": "rotated-secret", "webhook_secret": "new-token"})),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.json["id"], id.as_str());
    let wrong = v2(
        &app,
        Method::PATCH,
        &format!("{APPS}{id}/"),
        Some(json!({"client_secret": "not-the-secret"})),
    )
    .await;
    assert!(
        detail(&wrong, 400).contains("Zoom rejected"),
        "{}",
        wrong.text
    );
    let moved = v2(
        &app,
        Method::PATCH,
        &format!("{APPS}{id}/"),
        Some(json!({"client_id": "another"})),
    )
    .await;
    detail(&moved, 400);

    // The app log tells what changed, never the secret.
    let log = list(
        &app,
        &format!("/api/v2/zoom-oauth-app-logs/?oauth_app={id}"),
    )
    .await;
    let kinds: Vec<&str> = log
        .iter()
        .map(|l| l["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        vec!["webhook_secret_changed", "client_secret_changed", "created"],
        "{log:?}"
    );
    for line in &log {
        assert_eq!(line["oauth_app"], id.as_str());
        assert!(is_timestamp(&line["created_at"]));
        assert!(!line.to_string().contains("rotated-secret"), "{line}");
    }

    // An app with a credential cannot go; one without goes with 204 and no body.
    let (_, c) = connected(&app, &zoa).await;
    let refused = v2(&app, Method::DELETE, &format!("{APPS}{id}/"), None).await;
    detail(&refused, 409);
    let gone = v2(
        &app,
        Method::DELETE,
        &format!("{CREDENTIALS}{}/", str_of(&c, "id")),
        None,
    )
    .await;
    assert_eq!((gone.status, gone.text.as_str()), (204, ""));
    let deleted = v2(&app, Method::DELETE, &format!("{APPS}{id}/"), None).await;
    assert_eq!((deleted.status, deleted.text.as_str()), (204, ""));
    let after = v2(&app, Method::GET, &format!("{APPS}{id}/"), None).await;
    assert!(
        detail(&after, 404).contains("Zoom OAuth app"),
        "{}",
        after.text
    );
}

async fn app_filters_ordering_and_pages(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut made = Vec::new();
    for (i, kind) in ["user_level", "account_level", "user_level"]
        .iter()
        .enumerate()
    {
        made.push(recall_app(&app, &format!("client-{i}"), kind).await);
        app.keeper.clock.advance(Duration::from_secs(60));
    }
    let made_ids = ids(&made);
    let newest_first: Vec<String> = made_ids.iter().rev().cloned().collect();
    assert_eq!(ids(&list(&app, APPS).await), newest_first);

    let account = list(&app, &format!("{APPS}?kind=account_level")).await;
    assert_eq!(ids(&account), vec![made_ids[1].clone()]);
    let by_client = list(&app, &format!("{APPS}?client_id=client-2")).await;
    assert_eq!(ids(&by_client), vec![made_ids[2].clone()]);
    // Time ranges are inclusive, in ISO 8601 (with an offset, or a date alone).
    let second = str_of(&made[1], "created_at");
    let after = list(
        &app,
        &format!("{APPS}?created_at_after={}", urlencoding(&second)),
    )
    .await;
    assert_eq!(ids(&after), vec![made_ids[2].clone(), made_ids[1].clone()]);
    let before = list(
        &app,
        &format!("{APPS}?created_at_before={}", urlencoding(&second)),
    )
    .await;
    assert_eq!(ids(&before), vec![made_ids[1].clone(), made_ids[0].clone()]);
    let since_2000 = list(&app, &format!("{APPS}?created_at_after=2000-01-01")).await;
    assert_eq!(since_2000.len(), 3);

    // Pages of one, oldest first with ordering=created_at, there and back again.
    let first = v2(
        &app,
        Method::GET,
        &format!("{APPS}?ordering=created_at&page_size=1"),
        None,
    )
    .await;
    assert_eq!(ids(&results(&first)), vec![made_ids[0].clone()]);
    assert_eq!(first.json["previous"], Value::Null);
    let mut seen = ids(&results(&first));
    let mut page = first;
    while let Some(next) = page.json["next"].as_str().map(str::to_owned) {
        assert!(next.contains("ordering=created_at"), "{next}");
        page = app.follow(&next).await;
        seen.extend(ids(&results(&page)));
    }
    assert_eq!(seen, made_ids);
    let back = app
        .follow(page.json["previous"].as_str().expect("a previous page"))
        .await;
    assert_eq!(ids(&results(&back)), vec![made_ids[1].clone()]);
    // Newest first (the default, or -created_at) pages the other way.
    let newest = v2(
        &app,
        Method::GET,
        &format!("{APPS}?ordering=-created_at&page_size=2"),
        None,
    )
    .await;
    assert_eq!(ids(&results(&newest)), newest_first[..2].to_vec());
    let rest = app
        .follow(newest.json["next"].as_str().expect("next"))
        .await;
    assert_eq!(ids(&results(&rest)), newest_first[2..].to_vec());
    assert_eq!(rest.json["next"], Value::Null);

    for bad in [
        "ordering=client_id",
        "kind=team",
        "created_at_after=yesterday",
        "cursor=garbage",
        "page_size=0",
        "webhook_last_validation_before=13%2F01%2F2024",
    ] {
        let a = v2(&app, Method::GET, &format!("{APPS}?{bad}"), None).await;
        detail(&a, 400);
    }
}

/// `x` with the characters that matter in a query percent-encoded.
fn urlencoding(x: &str) -> String {
    x.replace('+', "%2B").replace(':', "%3A")
}

async fn the_uuid_webhook_url_validates_and_the_app_log_tells(backend: Backend) {
    let Some((app, zoa)) = started(backend).await else {
        return;
    };
    let id = str_of(&zoa, "id");
    let url = str_of(&zoa, "webhook_url");
    let secret = format!("webhook-secret-of-{CLIENT}");
    let now = app.keeper.clock.now().timestamp();
    let body = json!({
        "event": "endpoint.url_validation",
        "event_ts": now * 1000,
        "payload": {"plainToken": "qgg8vlvZRS6UYooatFL8Aw"},
    })
    .to_string();
    let a = app
        .post_zoom_event(&url, body.as_bytes(), &secret, now)
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
    assert_eq!(
        a.json["encryptedToken"],
        zoom::webhook::url_validation_response(&secret, "qgg8vlvZRS6UYooatFL8Aw").encrypted_token
    );
    let got = v2(&app, Method::GET, &format!("{APPS}{id}/"), None).await;
    assert!(
        is_timestamp(&got.json["webhook_last_validation"]),
        "{}",
        got.text
    );
    let validated = list(
        &app,
        &format!("{APPS}?webhook_last_validation_after=2000-01-01T00:00:00Z"),
    )
    .await;
    assert_eq!(ids(&validated), vec![id.clone()]);

    // Refused events: 401 to Zoom, one line in the app's log (not one per event).
    for _ in 0..3 {
        let refused = app
            .post_zoom_event(&url, body.as_bytes(), "wrong", now)
            .await;
        assert_eq!(refused.status, 401, "{}", refused.text);
    }
    let log = list(&app, "/api/v2/zoom-oauth-app-logs/").await;
    let kinds: Vec<&str> = log
        .iter()
        .map(|l| l["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        vec!["unverified_webhook", "url_validated", "created"],
        "{log:?}"
    );
    assert!(
        str_of(&log[0], "message").contains("Secret Token"),
        "{log:?}"
    );
    assert!(!log[0].to_string().contains(&secret));
}

async fn credential_lifecycle(backend: Backend) {
    let Some((app, zoa)) = started(backend).await else {
        return;
    };
    let app_uuid = str_of(&zoa, "id");
    let user = app.zoom_user(None).await;
    let mut meeting_ids = Vec::new();
    for i in 0..3 {
        let m = app
            .sim
            .control()
            .create_meeting(
                &user,
                &SimMeeting {
                    topic: Some(format!("Standup {i}")),
                    ..Default::default()
                },
            )
            .await
            .expect("sim meeting");
        meeting_ids.push(m.id);
    }
    let created = create_credential(&app, &app_uuid, &user).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let c = created.json;
    let id = str_of(&c, "id");
    assert!(is_uuid(&c["id"]), "{c}");
    assert_eq!(c["oauth_app"], app_uuid.as_str());
    assert_eq!(c["status"], "healthy");
    assert_eq!(c["user_id"], user.as_str());
    assert!(c["account_id"].is_string(), "{c}");
    assert_eq!(c["access_token_callback_url"], Value::Null);
    assert!(is_timestamp(&c["created_at"]));
    assert_eq!(
        c["meeting_sync_status"], "in_progress",
        "a sync runs on create"
    );
    assert!(c.get("authorization_code").is_none());

    // The sync runs; the status and the mappings say so.
    let (_stop, stopping) = tokio::sync::watch::channel(false);
    keeper::meeting_sync::run_once(&app.keeper, &stopping)
        .await
        .expect("sync round");
    let got = v2(&app, Method::GET, &format!("{CREDENTIALS}{id}/"), None).await;
    assert_eq!(got.json["meeting_sync_status"], "completed", "{}", got.text);
    let mappings = list(
        &app,
        &format!("/api/v2/zoom-meetings-to-credentials/?credential={id}"),
    )
    .await;
    let mut mapped: Vec<u64> = mappings
        .iter()
        .map(|m| m["meeting_id"].as_u64().expect("an integer meeting_id"))
        .collect();
    mapped.sort_unstable();
    for m in &meeting_ids {
        assert!(mapped.contains(m), "{m} in {mapped:?}");
    }
    for m in &mappings {
        assert_eq!(m["credential"], id.as_str());
        assert!(is_timestamp(&m["synced_at"]));
    }
    let one = list(
        &app,
        &format!(
            "/api/v2/zoom-meetings-to-credentials/?meeting_id={}",
            meeting_ids[0]
        ),
    )
    .await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["meeting_id"], meeting_ids[0]);

    // access-token/: Recall's {token, expires_at}, good for at least 120 s.
    let t = v2(
        &app,
        Method::GET,
        &format!("{CREDENTIALS}{id}/access-token/"),
        None,
    )
    .await;
    assert_eq!(t.status, 200, "{}", t.text);
    assert!(t.json["token"].as_str().is_some_and(|s| !s.is_empty()));
    let expires =
        chrono::DateTime::parse_from_rfc3339(&str_of(&t.json, "expires_at")).expect("expires_at");
    assert!(expires.timestamp() >= app.keeper.clock.now().timestamp() + 120);

    // sync-meetings/ and validate/: 200 with no body.
    let sync = v2(
        &app,
        Method::POST,
        &format!("{CREDENTIALS}{id}/sync-meetings/"),
        None,
    )
    .await;
    assert_eq!((sync.status, sync.text.as_str()), (200, ""));
    let got = v2(&app, Method::GET, &format!("{CREDENTIALS}{id}/"), None).await;
    assert_eq!(got.json["meeting_sync_status"], "in_progress");
    let valid = v2(
        &app,
        Method::POST,
        &format!("{CREDENTIALS}{id}/validate/"),
        None,
    )
    .await;
    assert_eq!((valid.status, valid.text.as_str()), (200, ""));

    // The credential's log: what happened, newest first, no token.
    let log = list(
        &app,
        &format!("/api/v2/zoom-oauth-credential-logs/?credential={id}"),
    )
    .await;
    let kinds: Vec<&str> = log
        .iter()
        .map(|l| l["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds.first(), Some(&"validated"), "{kinds:?}");
    assert!(
        kinds.contains(&"created") && kinds.contains(&"sync_completed"),
        "{kinds:?}"
    );
    let token = str_of(&t.json, "token");
    for line in &log {
        assert_eq!(line["credential"], id.as_str());
        assert!(!line.to_string().contains(&token));
    }
    // Filters on the lists.
    for (query, expected) in [
        (format!("user_id={user}"), 1),
        (format!("oauth_app={app_uuid}"), 1),
        ("status=healthy".to_owned(), 1),
        ("status=unhealthy".to_owned(), 0),
        ("meeting_sync_status=in_progress".to_owned(), 1),
        ("meeting_sync_status=completed".to_owned(), 0),
        (format!("account_id={}", str_of(&c, "account_id")), 1),
        ("account_id=someone-else".to_owned(), 0),
        ("created_at_before=2000-01-01".to_owned(), 0),
    ] {
        let found = list(&app, &format!("{CREDENTIALS}?{query}")).await;
        assert_eq!(found.len(), expected, "{query}");
    }

    // DELETE: 204, gone, its grant revoked at Zoom (the user's authorisation ends).
    let revocations = app.sim_stats().await.revocations;
    let gone = v2(&app, Method::DELETE, &format!("{CREDENTIALS}{id}/"), None).await;
    assert_eq!((gone.status, gone.text.as_str()), (204, ""));
    assert_eq!(app.sim_stats().await.revocations, revocations + 1);
    for path in [
        format!("{CREDENTIALS}{id}/"),
        format!("{CREDENTIALS}{id}/access-token/"),
    ] {
        let a = v2(&app, Method::GET, &path, None).await;
        assert!(
            detail(&a, 404).contains("Zoom OAuth credential"),
            "{}",
            a.text
        );
    }
    assert!(list(&app, "/api/v2/zoom-meetings-to-credentials/")
        .await
        .is_empty());
}

async fn reauthorising_a_user_updates_the_credential_in_place(backend: Backend) {
    let Some((app, zoa)) = started(backend).await else {
        return;
    };
    // Short-lived tokens, so the next access-token/ asks Zoom.
    app.zoom_token_ttl(60).await;
    let (user, first) = connected(&app, &zoa).await;
    let id = str_of(&first, "id");
    // The user uninstalls the app; the credential turns unhealthy.
    app.sim
        .control()
        .deauthorize(&user, CLIENT)
        .await
        .expect("deauthorize");
    let t = v2(
        &app,
        Method::GET,
        &format!("{CREDENTIALS}{id}/access-token/"),
        None,
    )
    .await;
    detail(&t, 409);
    let got = v2(&app, Method::GET, &format!("{CREDENTIALS}{id}/"), None).await;
    assert_eq!(got.json["status"], "unhealthy");

    // Re-authorising answers 201 with the same credential, healthy again — Recall's
    // current rule; not a 400 `conflicting_zoom_user_id`, whose "delete it and try
    // again" would revoke (uninstall) the grant just issued.
    let again = create_credential(&app, &str_of(&zoa, "id"), &user).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.json["id"], id.as_str());
    assert_eq!(again.json["status"], "healthy");
    assert_eq!(list(&app, CREDENTIALS).await.len(), 1);
    let t = v2(
        &app,
        Method::GET,
        &format!("{CREDENTIALS}{id}/access-token/"),
        None,
    )
    .await;
    assert_eq!(t.status, 200, "{}", t.text);
    let stats = app.sim_stats().await;
    assert_eq!(stats.revocations, 0, "nothing revoked");
    assert_eq!(stats.stale_refresh_token_uses, 0);
}

async fn a_storm_of_access_token_calls_after_expiry_makes_one_refresh(backend: Backend) {
    let Some((app, zoa)) = started(backend).await else {
        return;
    };
    // Tokens issued now live 100 s: under the 120 s a caller is promised.
    app.zoom_token_ttl(100).await;
    let (_, c) = connected(&app, &zoa).await;
    let id = str_of(&c, "id");
    app.zoom_token_ttl(3599).await;
    let path = format!("{CREDENTIALS}{id}/access-token/");
    let answers: Vec<Answer> = futures::stream::iter(0..100)
        .map(|_| v2(&app, Method::GET, &path, None))
        .buffer_unordered(100)
        .collect()
        .await;
    let first = &answers[0];
    for a in &answers {
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.json, first.json);
    }
    let stats = app.sim_stats().await;
    assert_eq!(stats.refresh_grants, 1);
    assert_eq!(stats.stale_refresh_token_uses, 0);
}

async fn an_unhealthy_credential_is_explained_and_validate_tells_the_truth(backend: Backend) {
    let Some((app, zoa)) = started(backend).await else {
        return;
    };
    let (user, c) = connected(&app, &zoa).await;
    let id = str_of(&c, "id");
    app.sim
        .control()
        .deauthorize(&user, CLIENT)
        .await
        .expect("deauthorize");
    // validate/ finds out now, without a bot having to fail first.
    let valid = v2(
        &app,
        Method::POST,
        &format!("{CREDENTIALS}{id}/validate/"),
        None,
    )
    .await;
    assert_eq!((valid.status, valid.text.as_str()), (200, ""));
    let got = v2(&app, Method::GET, &format!("{CREDENTIALS}{id}/"), None).await;
    assert_eq!(got.json["status"], "unhealthy", "{}", got.text);
    let unhealthy = list(&app, &format!("{CREDENTIALS}?status=unhealthy")).await;
    assert_eq!(ids(&unhealthy), vec![id.clone()]);
    let t = v2(
        &app,
        Method::GET,
        &format!("{CREDENTIALS}{id}/access-token/"),
        None,
    )
    .await;
    let why = detail(&t, 409);
    assert!(
        why.contains("unhealthy") && why.contains("authorise the app again"),
        "{why}"
    );
    assert_eq!(t.json["code"], "credential_unhealthy");
    let sync = v2(
        &app,
        Method::POST,
        &format!("{CREDENTIALS}{id}/sync-meetings/"),
        None,
    )
    .await;
    detail(&sync, 409);
    // Validating again changes nothing and says so in the log.
    let again = v2(
        &app,
        Method::POST,
        &format!("{CREDENTIALS}{id}/validate/"),
        None,
    )
    .await;
    assert_eq!(again.status, 200);
    let log = list(
        &app,
        &format!("/api/v2/zoom-oauth-credential-logs/?credential={id}"),
    )
    .await;
    assert_eq!(log[0]["kind"], "validated");
    assert!(
        str_of(&log[0], "message").contains("stays disconnected"),
        "{log:?}"
    );
    assert!(log.iter().any(|l| l["kind"] == "disconnected"), "{log:?}");
}

async fn meeting_sync_status_filter_agrees_with_what_is_shown(backend: Backend) {
    let Some((app, zoa)) = started(backend).await else {
        return;
    };
    let mut made = Vec::new();
    for _ in 0..8 {
        let (_, c) = connected(&app, &zoa).await;
        made.push(str_of(&c, "zoomkeeper_id"));
    }
    // One connection in each case of the rule, set in the database.
    let cases = [
        "sync_requested_at = NULL, last_attempted_sync_at = NULL, last_successful_sync_at = NULL",
        "sync_requested_at = created_at, last_attempted_sync_at = NULL, last_successful_sync_at = NULL",
        "sync_requested_at = created_at, last_attempted_sync_at = NULL, last_successful_sync_at = NULL, state = 'disconnected'",
        "sync_requested_at = NULL, last_attempted_sync_at = created_at, last_successful_sync_at = created_at",
        "sync_requested_at = NULL, last_attempted_sync_at = created_at, last_successful_sync_at = NULL",
        "sync_requested_at = created_at, last_attempted_sync_at = created_at, last_successful_sync_at = created_at",
        // An account-wide pass under way spans attempts.
        "sync_requested_at = created_at, last_attempted_sync_at = created_at, last_successful_sync_at = NULL, sync_pass_started_at = created_at",
        "sync_requested_at = NULL, last_attempted_sync_at = NULL, last_successful_sync_at = NULL, sync_pass_started_at = created_at, state = 'disconnected'",
    ];
    let statements: Vec<String> = made
        .iter()
        .zip(cases)
        .map(|(id, set)| format!("UPDATE zoom_oauth_connections SET {set} WHERE id = '{id}'"))
        .collect();
    app.execute_sql(&statements.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let shown: Vec<(String, String)> = list(&app, &format!("{CREDENTIALS}?page_size=100"))
        .await
        .iter()
        .map(|c| (str_of(c, "zoomkeeper_id"), str_of(c, "meeting_sync_status")))
        .collect();
    let status_of = |id: &String| {
        shown
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, s)| s.clone())
            .expect("listed")
    };
    assert_eq!(
        made.iter().map(status_of).collect::<Vec<_>>(),
        [
            "not_started",
            "in_progress",
            "failed",
            "completed",
            "failed",
            "completed",
            "in_progress",
            "failed"
        ]
    );
    for status in ["not_started", "in_progress", "completed", "failed"] {
        let filtered = list(&app, &format!("{CREDENTIALS}?meeting_sync_status={status}")).await;
        let mut got: Vec<String> = filtered
            .iter()
            .map(|c| str_of(c, "zoomkeeper_id"))
            .collect();
        let mut expected: Vec<String> = made
            .iter()
            .filter(|id| status_of(id) == status)
            .cloned()
            .collect();
        got.sort();
        expected.sort();
        assert_eq!(got, expected, "{status}");
    }
}

async fn objects_are_shared_with_api_v1(backend: Backend) {
    let Some((app, zoa)) = started(backend).await else {
        return;
    };
    // Made through v2, seen through v1 under its zoomkeeper_id.
    let v1_app = app.get_app(&str_of(&zoa, "zoomkeeper_id")).await;
    assert_eq!(v1_app.status, 200, "{}", v1_app.text);
    assert_eq!(v1_app.json["client_id"], CLIENT);
    assert_eq!(v1_app.json["kind"], "user_level");
    let (user, c) = connected(&app, &zoa).await;
    let v1 = app.connection(&str_of(&c, "zoomkeeper_id")).await;
    assert_eq!(v1["user_id"], user.as_str());
    assert_eq!(v1["zoom_oauth_app_id"], zoa["zoomkeeper_id"]);

    // Made through v1, seen through v2, by UUID or by v1 id.
    let (other_user, made) = app.connect(CLIENT, json!({})).await;
    assert_eq!(made.status, 201, "{}", made.text);
    let v1_id = str_of(&made.json, "id");
    let by_v1_id = v2(&app, Method::GET, &format!("{CREDENTIALS}{v1_id}/"), None).await;
    assert_eq!(by_v1_id.status, 200, "{}", by_v1_id.text);
    assert_eq!(by_v1_id.json["user_id"], other_user.as_str());
    let uuid = str_of(&by_v1_id.json, "id");
    let listed = list(&app, CREDENTIALS).await;
    assert!(ids(&listed).contains(&uuid));
    let token_v1 = app.access_token(&v1_id).await;
    let token_v2 = v2(
        &app,
        Method::GET,
        &format!("{CREDENTIALS}{uuid}/access-token/"),
        None,
    )
    .await;
    assert_eq!(token_v1.json["token"], token_v2.json["token"]);
    // A v1 connection with onbehalf on shows through v2 like any other; a v2
    // credential gets every capability its scopes cover.
    assert_eq!(v1["is_local_recording_token_supported"], true);
}

async fn bad_input_gets_detail_and_changes_nothing(backend: Backend) {
    let Some((app, zoa)) = started(backend).await else {
        return;
    };
    let app_uuid = str_of(&zoa, "id");
    let (_, c) = connected(&app, &zoa).await;
    let cred = str_of(&c, "id");
    let (other_app, other_key) = {
        let (project_id, key) = app.other_project("elsewhere").await;
        let _ = project_id;
        app.zoom_app("their-client", &secret_of("their-client"))
            .await;
        let a = app
            .send(app.request_as(&key, Method::POST, APPS).json(&json!({
                "kind": "user_level",
                "client_id": "their-client",
                "client_secret": secret_of("their-client"),
                "webhook_secret": "w",
            })))
            .await;
        assert_eq!(a.status, 201, "{}", a.text);
        (str_of(&a.json, "id"), key)
    };
    let _ = other_key;
    let user = app.zoom_user(None).await;
    let good = credential_body(&app, CLIENT, &app_uuid, &user).await;
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    let bodies = [
        json!({"oauth_app": 5, "authorization_code": good["authorization_code"]}),
        with("authorization_code", json!("a-bare-string")),
        with("oauth_app", json!("not-a-uuid")),
        with("oauth_app", json!(uuid::Uuid::new_v4().to_string())),
        with("oauth_app", json!(other_app)),
        with(
            "access_token_callback_url",
            json!("https://example.com/token"),
        ),
        json!({"oauth_app": app_uuid}),
        json!({"oauth_app": app_uuid, "authorization_code": {"code": "", "redirect_uri": REDIRECT_URI}}),
        json!({"oauth_app": app_uuid, "authorization_code": {"code": "x", "redirect_uri": "not a url"}}),
        json!({"oauth_app": app_uuid, "authorization_code": {"code": "nul\u{0}", "redirect_uri": REDIRECT_URI}}),
        json!({"oauth_app": app_uuid, "authorization_code": {"code": "never-issued", "redirect_uri": REDIRECT_URI}}),
        json!([1, 2]),
    ];
    for body in bodies {
        let a = v2(&app, Method::POST, CREDENTIALS, Some(body.clone())).await;
        detail(&a, 400);
        assert!(!a.text.contains("never-issued"), "{}", a.text);
    }
    let unknown_app = v2(
        &app,
        Method::POST,
        CREDENTIALS,
        Some(with("oauth_app", json!(uuid::Uuid::new_v4().to_string()))),
    )
    .await;
    assert_eq!(
        unknown_app.json["fields"]["oauth_app"][0],
        "No Zoom OAuth app with this id exists in your project."
    );
    let apps = [
        json!({"kind": "team", "client_id": "c", "client_secret": "s", "webhook_secret": "w"}),
        json!({"kind": "user_level", "client_id": "c", "client_secret": "s"}),
        json!({"kind": "user_level", "client_id": 7, "client_secret": "s", "webhook_secret": "w"}),
        json!({"kind": "user_level", "client_id": " ", "client_secret": "s", "webhook_secret": "w"}),
    ];
    for body in apps {
        let a = v2(&app, Method::POST, APPS, Some(body)).await;
        detail(&a, 400);
    }
    // Not JSON, no key, a wrong key, malformed ids, unknown routes and methods.
    let form = app
        .send(app.request(Method::POST, APPS).body("kind=user_level"))
        .await;
    detail(&form, 415);
    let anonymous = app.send(app.http.get(app.url(CREDENTIALS))).await;
    detail(&anonymous, 401);
    let wrong = app
        .send(app.request_as("zk_nope", Method::GET, CREDENTIALS))
        .await;
    detail(&wrong, 401);
    for path in [
        format!("{CREDENTIALS}not-a-uuid/"),
        format!("{CREDENTIALS}{}/", uuid::Uuid::new_v4()),
        format!("{CREDENTIALS}{app_uuid}/"),
        format!("{APPS}{cred}/"),
        format!("{CREDENTIALS}zoc_short/access-token/"),
        "/api/v2/zoom-oauth-nothing/".to_owned(),
    ] {
        let a = v2(&app, Method::GET, &path, None).await;
        detail(&a, 404);
    }
    let not_allowed = v2(&app, Method::PUT, &format!("{CREDENTIALS}{cred}/"), None).await;
    detail(&not_allowed, 405);
    for query in [
        "oauth_app=nope",
        "status=sick",
        "meeting_sync_status=done",
        "created_at_after=soon",
        "user_id=a%00b",
    ] {
        let a = v2(&app, Method::GET, &format!("{CREDENTIALS}?{query}"), None).await;
        detail(&a, 400);
    }
    for query in ["meeting_id=12", "credential=nope", "synced_at_after=later"] {
        let a = v2(
            &app,
            Method::GET,
            &format!("/api/v2/zoom-meetings-to-credentials/?{query}"),
            None,
        )
        .await;
        detail(&a, 400);
    }
    // Nothing changed.
    assert_eq!(ids(&list(&app, CREDENTIALS).await), vec![cred]);
    assert_eq!(ids(&list(&app, APPS).await), vec![app_uuid]);
}

async fn other_projects_objects_are_invisible(backend: Backend) {
    let Some((app, zoa)) = started(backend).await else {
        return;
    };
    let (_, c) = connected(&app, &zoa).await;
    let cred = str_of(&c, "id");
    let app_uuid = str_of(&zoa, "id");
    let (_, key) = app.other_project("elsewhere").await;
    for (method, path) in [
        (Method::GET, format!("{APPS}{app_uuid}/")),
        (Method::PATCH, format!("{APPS}{app_uuid}/")),
        (Method::DELETE, format!("{APPS}{app_uuid}/")),
        (Method::GET, format!("{CREDENTIALS}{cred}/")),
        (Method::DELETE, format!("{CREDENTIALS}{cred}/")),
        (Method::GET, format!("{CREDENTIALS}{cred}/access-token/")),
        (Method::POST, format!("{CREDENTIALS}{cred}/sync-meetings/")),
        (Method::POST, format!("{CREDENTIALS}{cred}/validate/")),
    ] {
        let request = app.request_as(&key, method.clone(), &path);
        let request = if method == Method::PATCH {
            request.json(&json!({"webhook_secret": "theirs"}))
        } else {
            request
        };
        let a = app.send(request).await;
        detail(&a, 404);
    }
    for path in [
        APPS.to_owned(),
        CREDENTIALS.to_owned(),
        format!("{CREDENTIALS}?oauth_app={app_uuid}"),
        "/api/v2/zoom-meetings-to-credentials/".to_owned(),
        format!("/api/v2/zoom-oauth-credential-logs/?credential={cred}"),
        "/api/v2/zoom-oauth-app-logs/".to_owned(),
    ] {
        let a = app.send(app.request_as(&key, Method::GET, &path)).await;
        assert!(results(&a).is_empty(), "{path}: {}", a.text);
    }
    // Still there for its own project.
    assert_eq!(ids(&list(&app, CREDENTIALS).await), vec![cred]);
}

async fn openapi_documents_v2_under_its_own_tag(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let doc = app.send(app.http.get(app.url("/openapi.json"))).await.json;
    let tag = "Recall-compatible API (v2)";
    assert!(
        doc["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .any(|t| t["name"] == tag),
        "the tag is declared"
    );
    for (path, methods) in [
        (APPS, &["get", "post"][..]),
        (
            "/api/v2/zoom-oauth-apps/{id}/",
            &["get", "patch", "delete"][..],
        ),
        (CREDENTIALS, &["get", "post"][..]),
        (
            "/api/v2/zoom-oauth-credentials/{id}/",
            &["get", "delete"][..],
        ),
        (
            "/api/v2/zoom-oauth-credentials/{id}/access-token/",
            &["get"][..],
        ),
        (
            "/api/v2/zoom-oauth-credentials/{id}/sync-meetings/",
            &["post"][..],
        ),
        (
            "/api/v2/zoom-oauth-credentials/{id}/validate/",
            &["post"][..],
        ),
        ("/api/v2/zoom-meetings-to-credentials/", &["get"][..]),
        ("/api/v2/zoom-oauth-credential-logs/", &["get"][..]),
        ("/api/v2/zoom-oauth-app-logs/", &["get"][..]),
    ] {
        for method in methods {
            let op = &doc["paths"][path][method];
            assert_eq!(op["tags"][0], tag, "{method} {path}");
            assert_eq!(
                op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/RecallErrorBody",
                "{method} {path}"
            );
        }
    }
    // The v1 operations keep their own tags and error body.
    assert_eq!(
        doc["paths"]["/api/v1/zoom_oauth_connections"]["get"]["responses"]["401"]["content"]
            ["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
}
