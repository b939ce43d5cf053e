//! Webhook subscriptions and the signing secret (DESIGN.md §4 "Outgoing webhooks"),
//! on SQLite and PostgreSQL.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use keeper::config::Settings;
use reqwest::Method;
use serde_json::{json, Value};
use testkit::{on_both_databases, spawn_app, spawn_app_with, Backend, TestApp};

on_both_databases!(
    subscription_lifecycle,
    private_addresses_are_refused_unless_allowed,
    bad_input_is_refused_and_stores_nothing,
    at_most_ten_subscriptions_per_project,
    other_projects_webhooks_are_invisible,
    secret_is_shown_and_rotated,
    deliveries_page_through_next_links,
    a_cursor_from_another_list_is_refused,
);

const TRIGGER: &str = "zoom_oauth_connection.state_change";

async fn private_ok(backend: Backend) -> Option<TestApp> {
    spawn_app_with(
        backend,
        Settings {
            allow_private_callback_urls: Some(true),
            ..Settings::default()
        },
    )
    .await
}

async fn create(app: &TestApp, body: Value) -> testkit::Answer {
    app.send(app.request(Method::POST, "/api/v1/webhooks").json(&body))
        .await
}

async fn count(app: &TestApp) -> usize {
    let list = app
        .send(app.request(Method::GET, "/api/v1/webhooks?page_size=100"))
        .await;
    assert_eq!(list.status, 200, "{}", list.text);
    list.json["results"].as_array().expect("results").len()
}

fn is_timestamp(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 27 && s.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(s).is_ok()
    })
}

async fn subscription_lifecycle(backend: Backend) {
    let Some(app) = private_ok(backend).await else {
        return;
    };
    let created = create(
        &app,
        json!({"url": "http://127.0.0.1:9/hook", "triggers": [TRIGGER]}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let w = &created.json;
    let id = w["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("webhook_") && id.len() == 24, "{id}");
    assert_eq!(w["url"], "http://127.0.0.1:9/hook");
    assert_eq!(w["triggers"], json!([TRIGGER]));
    assert_eq!(w["is_active"], true);
    assert!(is_timestamp(&w["created_at"]) && is_timestamp(&w["updated_at"]));
    let keys: Vec<&String> = w.as_object().expect("object").keys().collect();
    assert_eq!(keys.len(), 6, "{keys:?}");

    let got = app
        .send(app.request(Method::GET, &format!("/api/v1/webhooks/{id}")))
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json, *w);

    let patched = app
        .send(
            app.request(Method::PATCH, &format!("/api/v1/webhooks/{id}"))
                .json(&json!({"is_active": false, "url": "http://localhost:9/other"})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.json["is_active"], false);
    assert_eq!(patched.json["url"], "http://localhost:9/other");
    assert_eq!(patched.json["triggers"], json!([TRIGGER]));

    // Pagination: three more, pages of two.
    for n in 0..3 {
        let c = create(
            &app,
            json!({"url": format!("http://127.0.0.1:9/{n}"), "triggers": [TRIGGER]}),
        )
        .await;
        assert_eq!(c.status, 201, "{}", c.text);
    }
    let first = app
        .send(app.request(Method::GET, "/api/v1/webhooks?page_size=2"))
        .await;
    assert_eq!(first.json["results"].as_array().expect("page").len(), 2);
    assert_eq!(first.json["results"][0]["url"], "http://127.0.0.1:9/2");
    let next = first.json["next"].as_str().expect("next link");
    let second = app.follow(next).await;
    assert_eq!(second.json["results"].as_array().expect("page").len(), 2);
    assert!(second.json["next"].is_null());
    assert_eq!(second.json["results"][1]["id"], id.as_str());

    let deliveries = app
        .send(app.request(Method::GET, &format!("/api/v1/webhooks/{id}/deliveries")))
        .await;
    assert_eq!(deliveries.status, 200, "{}", deliveries.text);
    assert_eq!(deliveries.json["results"], json!([]));
    app.send(app.request(
        Method::GET,
        &format!("/api/v1/webhooks/{id}/deliveries?status=lost"),
    ))
    .await
    .assert_error(400, "invalid_request");

    let deleted = app
        .send(app.request(Method::DELETE, &format!("/api/v1/webhooks/{id}")))
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    app.send(app.request(Method::GET, &format!("/api/v1/webhooks/{id}")))
        .await
        .assert_error(404, "not_found");
    assert_eq!(count(&app).await, 3);
}

async fn private_addresses_are_refused_unless_allowed(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    for url in [
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest",
        "https://[::1]/hook",
        "https://localhost/hook",
    ] {
        let a = create(&app, json!({"url": url, "triggers": [TRIGGER]})).await;
        a.assert_error(400, "invalid_request");
        let problem = a.field_problems("url").join(" ");
        assert!(
            problem.contains("allow_private_callback_urls"),
            "{url}: {problem}"
        );
    }
    // Plain http is refused too when private URLs are not allowed.
    let a = create(
        &app,
        json!({"url": "http://93.184.216.34/hook", "triggers": [TRIGGER]}),
    )
    .await;
    a.assert_error(400, "invalid_request");
    assert!(a.field_problems("url")[0].contains("https"));
    assert_eq!(count(&app).await, 0);

    // The PATCH path checks the same way.
    let Some(open) = private_ok(backend).await else {
        return;
    };
    let c = create(
        &open,
        json!({"url": "http://10.0.0.1/hook", "triggers": [TRIGGER]}),
    )
    .await;
    assert_eq!(c.status, 201, "{}", c.text);
}

async fn bad_input_is_refused_and_stores_nothing(backend: Backend) {
    let Some(app) = private_ok(backend).await else {
        return;
    };
    let cases = [
        (
            json!({"url": "http://127.0.0.1:9/h", "triggers": ["meeting.started"]}),
            "triggers",
        ),
        (
            json!({"url": "http://127.0.0.1:9/h", "triggers": []}),
            "triggers",
        ),
        (
            json!({"url": "http://127.0.0.1:9/h", "triggers": [TRIGGER, TRIGGER]}),
            "triggers",
        ),
        (
            json!({"url": "/relative/path", "triggers": [TRIGGER]}),
            "url",
        ),
        (
            json!({"url": "ftp://example.com/x", "triggers": [TRIGGER]}),
            "url",
        ),
        (
            json!({"url": "http://user:pw@127.0.0.1:9/h", "triggers": [TRIGGER]}),
            "url",
        ),
        (
            json!({"url": "http://127.0.0.1:9/h", "triggers": [TRIGGER], "secret": "x"}),
            "secret",
        ),
        (json!({"url": 5, "triggers": [TRIGGER]}), "url"),
        (json!({"triggers": [TRIGGER]}), "url"),
    ];
    for (body, field) in cases {
        let a = create(&app, body.clone()).await;
        a.assert_error(400, "invalid_request");
        assert!(!a.field_problems(field).is_empty(), "{body}: {}", a.text);
    }
    let raw = app
        .send(
            app.request(Method::POST, "/api/v1/webhooks")
                .header("content-type", "application/json")
                .body("{\"url\": "),
        )
        .await;
    raw.assert_error(400, "invalid_json");
    assert_eq!(count(&app).await, 0);

    // A bad PATCH changes nothing.
    let c = create(
        &app,
        json!({"url": "http://127.0.0.1:9/h", "triggers": [TRIGGER]}),
    )
    .await;
    let id = c.json["id"].as_str().expect("id").to_owned();
    for body in [
        json!({"triggers": ["nope"]}),
        json!({"url": "ftp://x"}),
        json!({"is_active": "yes"}),
        json!({"colour": "red"}),
    ] {
        app.send(
            app.request(Method::PATCH, &format!("/api/v1/webhooks/{id}"))
                .json(&body),
        )
        .await
        .assert_error(400, "invalid_request");
    }
    let got = app
        .send(app.request(Method::GET, &format!("/api/v1/webhooks/{id}")))
        .await;
    assert_eq!(got.json, c.json);
    for bad in ["webhook_nope", "zoa_aaaaaaaaaaaaaaaa", "%20"] {
        app.send(app.request(Method::GET, &format!("/api/v1/webhooks/{bad}")))
            .await
            .assert_error(404, "not_found");
    }
    app.send(app.request(Method::POST, "/api/v1/webhook_deliveries/not-a-uuid/resend"))
        .await
        .assert_error(404, "not_found");
    app.send(app.request(
        Method::POST,
        &format!("/api/v1/webhook_deliveries/{}/resend", uuid::Uuid::new_v4()),
    ))
    .await
    .assert_error(404, "not_found");
}

async fn at_most_ten_subscriptions_per_project(backend: Backend) {
    let Some(app) = private_ok(backend).await else {
        return;
    };
    for n in 0..10 {
        let c = create(
            &app,
            json!({"url": format!("http://127.0.0.1:9/{n}"), "triggers": [TRIGGER]}),
        )
        .await;
        assert_eq!(c.status, 201, "{}", c.text);
    }
    let eleventh = create(
        &app,
        json!({"url": "http://127.0.0.1:9/x", "triggers": [TRIGGER]}),
    )
    .await;
    eleventh.assert_error(409, "too_many_webhooks");
    assert!(eleventh.json["error"]
        .as_str()
        .is_some_and(|m| m.contains("10 webhook subscriptions")));
    assert_eq!(count(&app).await, 10);
}

async fn other_projects_webhooks_are_invisible(backend: Backend) {
    let Some(app) = private_ok(backend).await else {
        return;
    };
    let c = create(
        &app,
        json!({"url": "http://127.0.0.1:9/h", "triggers": [TRIGGER]}),
    )
    .await;
    let id = c.json["id"].as_str().expect("id").to_owned();
    let (_, other_key) = app.other_project("other").await;
    let path = format!("/api/v1/webhooks/{id}");
    for method in [Method::GET, Method::DELETE] {
        app.send(app.request_as(&other_key, method, &path))
            .await
            .assert_error(404, "not_found");
    }
    app.send(
        app.request_as(&other_key, Method::PATCH, &path)
            .json(&json!({"is_active": false})),
    )
    .await
    .assert_error(404, "not_found");
    app.send(app.request_as(&other_key, Method::GET, &format!("{path}/deliveries")))
        .await
        .assert_error(404, "not_found");
    let list = app
        .send(app.request_as(&other_key, Method::GET, "/api/v1/webhooks"))
        .await;
    assert_eq!(list.json["results"], json!([]));
    let mine = app.send(app.request(Method::GET, &path)).await;
    assert_eq!(mine.json["is_active"], true);
    // Each project has its own secret.
    let a = app
        .send(app.request(Method::GET, "/api/v1/webhook_secret"))
        .await;
    let b = app
        .send(app.request_as(&other_key, Method::GET, "/api/v1/webhook_secret"))
        .await;
    assert_ne!(a.json["secret"], b.json["secret"]);
}

async fn secret_is_shown_and_rotated(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let shown = app
        .send(app.request(Method::GET, "/api/v1/webhook_secret"))
        .await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    let old = shown.json["secret"].as_str().expect("secret").to_owned();
    assert_eq!(STANDARD.decode(&old).expect("base64").len(), 32);
    let again = app
        .send(app.request(Method::GET, "/api/v1/webhook_secret"))
        .await;
    assert_eq!(again.json["secret"], old.as_str());

    let rotated = app
        .send(app.request(Method::POST, "/api/v1/webhook_secret/rotate"))
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let new = rotated.json["secret"].as_str().expect("secret").to_owned();
    assert_ne!(new, old);
    assert_eq!(STANDARD.decode(&new).expect("base64").len(), 32);
    let now_shown = app
        .send(app.request(Method::GET, "/api/v1/webhook_secret"))
        .await;
    assert_eq!(now_shown.json["secret"], new.as_str());

    // The old one still signs during the grace period.
    let secrets =
        keeper::webhooks::signing_secrets(&*app.keeper.store, &app.keeper.vault, &app.project_id)
            .await
            .expect("secrets");
    use secrecy::ExposeSecret as _;
    assert_eq!(STANDARD.encode(secrets.current.expose_secret()), new);
    assert_eq!(
        secrets
            .previous
            .as_ref()
            .map(|p| STANDARD.encode(p.expose_secret())),
        Some(old.clone())
    );
    // Secrets never reach the logs.
    let logs = testkit::captured_logs();
    assert!(!logs.contains(&old) && !logs.contains(&new));
}

/// Inserts `n` finished deliveries for `webhook`, one second apart, straight into
/// the table (no receiver needed to page through them).
async fn insert_deliveries(app: &TestApp, webhook: &str, n: usize) -> Vec<String> {
    let mut keys = Vec::new();
    for i in 0..n {
        let key = uuid::Uuid::new_v4().to_string();
        let at = chrono::Utc::now() - chrono::Duration::seconds(i64::try_from(i).expect("small"));
        match app.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&app.database_url)
                    .await
                    .expect("sqlite");
                sqlx::query(
                    "INSERT INTO webhook_deliveries (idempotency_key, project_id, subscription_id, \"trigger\", payload, status, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, '{}', 'failure', ?5, ?5)",
                )
                .bind(&key)
                .bind(&app.project_id)
                .bind(webhook)
                .bind(TRIGGER)
                .bind(at.timestamp_micros())
                .execute(&pool)
                .await
                .expect("insert delivery");
                pool.close().await;
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&app.database_url)
                    .await
                    .expect("postgres");
                sqlx::query(
                    "INSERT INTO webhook_deliveries (idempotency_key, project_id, subscription_id, \"trigger\", payload, status, created_at, updated_at) VALUES ($1, $2, $3, $4, '{}', 'failure', $5, $5)",
                )
                .bind(&key)
                .bind(&app.project_id)
                .bind(webhook)
                .bind(TRIGGER)
                .bind(at)
                .execute(&pool)
                .await
                .expect("insert delivery");
                pool.close().await;
            }
        }
        keys.push(key);
    }
    keys
}

async fn deliveries_page_through_next_links(backend: Backend) {
    let Some(app) = private_ok(backend).await else {
        return;
    };
    let c = create(
        &app,
        json!({"url": "http://127.0.0.1:9/h", "triggers": [TRIGGER]}),
    )
    .await;
    let id = c.json["id"].as_str().expect("id").to_owned();
    let inserted = insert_deliveries(&app, &id, 5).await;
    let mut seen = Vec::new();
    let mut page = app
        .send(app.request(
            Method::GET,
            &format!("/api/v1/webhooks/{id}/deliveries?page_size=2"),
        ))
        .await;
    let mut pages = 1;
    loop {
        assert_eq!(page.status, 200, "{}", page.text);
        for d in page.json["results"].as_array().expect("results") {
            seen.push(d["idempotency_key"].as_str().expect("key").to_owned());
        }
        let Some(next) = page.json["next"].as_str().map(str::to_owned) else {
            break;
        };
        page = app.follow(&next).await;
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, inserted, "newest first, each once");
    // And back again with `previous`.
    let previous = page.json["previous"].as_str().expect("previous").to_owned();
    let back = app.follow(&previous).await;
    assert_eq!(back.status, 200, "{}", back.text);
    assert_eq!(back.json["results"].as_array().expect("results").len(), 2);
}

async fn a_cursor_from_another_list_is_refused(backend: Backend) {
    let Some(app) = private_ok(backend).await else {
        return;
    };
    app.new_app("client-cursors").await;
    for _ in 0..2 {
        let (_, c) = app.connect("client-cursors", json!({})).await;
        assert_eq!(c.status, 201, "{}", c.text);
    }
    let list = app
        .send(app.request(Method::GET, "/api/v1/zoom_oauth_connections?page_size=1"))
        .await;
    assert_eq!(list.status, 200, "{}", list.text);
    let connection = list.json["results"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let next = list.json["next"].as_str().expect("next");
    let (_, query) = next.split_once('?').expect("query");
    let cursor = query
        .split('&')
        .find_map(|p| p.strip_prefix("cursor="))
        .expect("cursor");
    let c = create(
        &app,
        json!({"url": "http://127.0.0.1:9/h", "triggers": [TRIGGER]}),
    )
    .await;
    let webhook = c.json["id"].as_str().expect("id").to_owned();
    for path in [
        format!("/api/v1/zoom_oauth_connections/{connection}/events"),
        "/api/v1/zoom_meetings".to_owned(),
        format!("/api/v1/webhooks/{webhook}/deliveries"),
        "/api/v1/webhooks".to_owned(),
        "/api/v1/zoom_oauth_apps".to_owned(),
    ] {
        app.send(app.request(Method::GET, &format!("{path}?cursor={cursor}")))
            .await
            .assert_error(400, "invalid_cursor");
    }
    // On its own list it still works.
    let own = app.follow(next).await;
    assert_eq!(own.status, 200, "{}", own.text);
}
