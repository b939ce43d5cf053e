//! Authentication, operations endpoints, rate limiting and logs.

use keeper::config::Settings;
use reqwest::Method;
use serde_json::json;
use testkit::{captured_logs, spawn_app, spawn_app_with, Answer, Backend};

const APPS: &str = "/api/v1/zoom_oauth_apps";

#[tokio::test]
async fn the_three_401s_say_exactly_what_is_wrong() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let missing = app.send(app.http.get(app.url(APPS))).await;
    missing.assert_error(401, "missing_authorization");
    assert_eq!(missing.json["error"], "Missing Authorization header");

    for header in [
        "Bearer abc",
        "Token",
        "Token ",
        "zk_abc",
        "Token a b",
        "Basic dXNlcjpwYXNz",
    ] {
        let a = app
            .send(app.http.get(app.url(APPS)).header("authorization", header))
            .await;
        a.assert_error(401, "invalid_authorization_header");
        assert_eq!(
            a.json["error"],
            "Invalid Authorization header. Should have this format: Token <api_key>"
        );
    }

    let forged = format!("zk_{}", "A".repeat(43));
    for key in [
        forged.as_str(),
        "not-even-a-zk-key",
        &app.key[..app.key.len() - 1],
    ] {
        let a = app.send(app.request_as(key, Method::GET, APPS)).await;
        a.assert_error(401, "invalid_api_key");
        assert_eq!(a.json["error"], "Invalid or disabled API key");
    }

    // Writes are refused the same way, before the body is even read.
    let a = app
        .send(
            app.http
                .post(app.url(APPS))
                .json(&json!({"client_id": "x", "client_secret": "y"})),
        )
        .await;
    a.assert_error(401, "missing_authorization");
    assert_eq!(app.all_app_ids().await.len(), 0);

    // The good key works, and its use is recorded.
    assert_eq!(app.list_apps("").await.status, 200);
    let row = app
        .keeper
        .store
        .api_key_by_hash(&keeper::api_keys::hash(&app.key))
        .await
        .expect("store")
        .expect("key row");
    assert!(row.last_used_at.is_some());

    // A disabled key is refused with the same message as an unknown one.
    let pool = sqlx::SqlitePool::connect(&app.database_url)
        .await
        .expect("sqlite");
    sqlx::query("UPDATE api_keys SET disabled_at = 1 WHERE id = ?")
        .bind(&row.id)
        .execute(&pool)
        .await
        .expect("disable key");
    pool.close().await;
    let a = app.list_apps("").await;
    a.assert_error(401, "invalid_api_key");
    assert_eq!(a.json["error"], "Invalid or disabled API key");
}

#[tokio::test]
async fn a_body_that_is_not_an_object_is_described_plainly() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    for body in ["null", "[]", "42", "\"text\""] {
        let a = app
            .send(
                app.request(Method::POST, APPS)
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await;
        a.assert_error(400, "invalid_request");
        assert_eq!(
            a.field_problems("body"),
            vec!["Must be a JSON object."],
            "{body}"
        );
    }
    assert!(app.all_app_ids().await.is_empty());
}

#[tokio::test]
async fn health_readiness_and_unknown_routes() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let health = app.send(app.http.get(app.url("/healthz"))).await;
    assert_eq!(
        (health.status, health.json.clone()),
        (200, json!({"status": "ok"}))
    );
    let ready = app.send(app.http.get(app.url("/readyz"))).await;
    assert_eq!(
        (ready.status, ready.json.clone()),
        (200, json!({"status": "ok"}))
    );

    app.send(app.http.get(app.url("/nope")))
        .await
        .assert_error(404, "not_found");
    app.send(app.request(Method::GET, "/api/v1/nothing_here"))
        .await
        .assert_error(404, "not_found");
    app.send(app.request(Method::PUT, APPS))
        .await
        .assert_error(405, "method_not_allowed");
}

#[tokio::test]
async fn openapi_document_and_docs_page() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let doc = app.send(app.http.get(app.url("/openapi.json"))).await;
    assert_eq!(doc.status, 200);
    assert!(doc.json["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.")));
    let paths = doc.json["paths"].as_object().expect("paths");
    for p in [APPS, "/api/v1/zoom_oauth_apps/{id}", "/healthz", "/readyz"] {
        assert!(paths.contains_key(p), "{p} missing from {:?}", paths.keys());
    }
    assert!(
        paths[APPS]["post"].is_object()
            && paths["/api/v1/zoom_oauth_apps/{id}"]["patch"].is_object()
    );
    assert!(doc.json["components"]["schemas"]["AppResponse"].is_object());
    assert!(doc.json["components"]["securitySchemes"]["api_key"].is_object());

    // Every answer an operation can give is documented: 401 and 429 (with
    // Retry-After) behind an API key, 413/415 for JSON bodies, 503 on token
    // endpoints, and a default error.
    let mut secured = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let responses = op["responses"].as_object().expect("responses");
            let has = |status: &str| responses.contains_key(status);
            assert!(has("default"), "{method} {path}: no default");
            let is_secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            if !is_secured {
                continue;
            }
            secured += 1;
            assert!(
                has("401") && has("429"),
                "{method} {path}: {:?}",
                responses.keys()
            );
            assert!(
                responses["429"]["headers"]["Retry-After"].is_object(),
                "{method} {path}: 429 without Retry-After"
            );
            if op["requestBody"]["content"]["application/json"].is_object() {
                assert!(
                    has("413") && has("415"),
                    "{method} {path}: {:?}",
                    responses.keys()
                );
            }
            if path.contains("token") {
                assert!(has("503"), "{method} {path}: {:?}", responses.keys());
            }
        }
    }
    assert!(secured > 30, "{secured} secured operations");
    // No component is named after a Rust type; every tag used is declared.
    let schemas = doc.json["components"]["schemas"]
        .as_object()
        .expect("schemas");
    for rust in ["BTreeMap", "HashMap", "Vec", "Option"] {
        assert!(!schemas.contains_key(rust), "component {rust}");
    }
    let declared: Vec<&str> = doc.json["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for item in paths.values() {
        for op in item.as_object().expect("path item").values() {
            for tag in op["tags"].as_array().into_iter().flatten() {
                let tag = tag.as_str().expect("tag");
                assert!(declared.contains(&tag), "tag {tag} is not declared");
            }
        }
    }
    assert!(doc.json["servers"].is_array());
    // The enums are the server's own words.
    let words = |schema: &str| -> Vec<String> {
        schemas[schema]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{schema} is an enum: {}", schemas[schema]))
            .iter()
            .map(|w| w.as_str().expect("a word").to_owned())
            .collect()
    };
    use keeper::storage::{ConnectionState, DeliveryStatus};
    assert_eq!(
        words("ConnectionState"),
        [ConnectionState::Connected, ConnectionState::Disconnected].map(|s| s.as_str())
    );
    assert_eq!(
        words("DeliveryStatus"),
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Success,
            DeliveryStatus::Failure
        ]
        .map(|s| s.as_str())
    );
    assert_eq!(words("WebhookTrigger"), keeper::webhooks::TRIGGERS);
    assert_eq!(
        paths["/api/v1/zoom_oauth_connections/{id}"]["get"]["responses"]["200"]["content"]
            ["application/json"]["schema"]["$ref"],
        "#/components/schemas/ConnectionResponse"
    );
    assert_eq!(
        schemas["ConnectionResponse"]["properties"]["state"]["$ref"],
        "#/components/schemas/ConnectionState"
    );

    let page = app.http.get(app.url("/docs/")).send().await.expect("docs");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.to_lowercase().contains("<html"), "{html}");
    let bundle = app
        .http
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .expect("bundle");
    assert_eq!(bundle.status(), 200, "assets are served from the binary");
    assert!(
        bundle.bytes().await.expect("bundle body").len() > 100_000,
        "the bundle the page loads is whole"
    );
    // The binary carries no source maps (nor bundles the page never loads).
    for unused in [
        "swagger-ui-bundle.js.map",
        "swagger-ui.css.map",
        "swagger-ui-es-bundle.js",
    ] {
        let a = app
            .http
            .get(app.url(&format!("/docs/{unused}")))
            .send()
            .await
            .expect("asset");
        let len = a.bytes().await.expect("asset body").len();
        assert_eq!(len, 0, "{unused} is not shipped");
    }
    let redirect = app.http.get(app.url("/docs")).send().await.expect("docs");
    assert_eq!(redirect.status(), 200);
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_zoom_calls() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let a = app.new_app("metrics-client").await;
    let id = a["id"].as_str().expect("id");
    for _ in 0..3 {
        assert_eq!(app.get_app(id).await.status, 200);
    }
    app.get_app("zoa_0000000000000000")
        .await
        .assert_error(404, "not_found");
    let scrape = app.send(app.http.get(app.url("/metrics"))).await;
    assert_eq!(scrape.status, 200);
    assert_eq!(
        scrape.headers["content-type"],
        ("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = scrape.text;
    assert!(text.ends_with("\n# EOF\n"), "a complete exposition: {text}");
    assert!(text.contains("# TYPE zoomkeeper_http_requests counter\n"));
    assert!(text.contains(
        "zoomkeeper_http_requests_total{method=\"GET\",route=\"/api/v1/zoom_oauth_apps/{id}\",status=\"200\"} 3"
    ), "{text}");
    assert!(text.contains(
        "zoomkeeper_http_requests_total{method=\"GET\",route=\"/api/v1/zoom_oauth_apps/{id}\",status=\"404\"} 1"
    ));
    assert!(text.contains("route=\"/api/v1/zoom_oauth_apps\",status=\"201\"} 1"));
    assert!(text.contains("zoomkeeper_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/zoom_oauth_apps/{id}\"} 4"));
    assert!(text.contains(
        "zoomkeeper_zoom_calls_total{endpoint=\"oauth_token_client_credentials\",outcome=\"success\"} 1"
    ));
    assert!(!text.contains(id), "raw paths never become labels");
}

#[tokio::test]
async fn a_project_over_its_rate_limit_gets_429_with_retry_after() {
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        Settings {
            rate_limit_per_second: Some(0.5),
            rate_limit_burst: Some(3),
            ..Settings::default()
        },
    )
    .await
    else {
        return;
    };
    let mut statuses = Vec::new();
    let mut last: Option<Answer> = None;
    for _ in 0..5 {
        let a = app.list_apps("").await;
        statuses.push(a.status);
        last = Some(a);
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
    let last = last.expect("answers");
    last.assert_error(429, "rate_limited");
    let retry: u64 = last.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry), "{retry}");

    // Another project has its own bucket.
    let (_, other_key) = app.other_project("calm").await;
    let other = app
        .send(app.request_as(&other_key, Method::GET, APPS))
        .await;
    assert_eq!(other.status, 200);
}

#[tokio::test]
async fn request_logs_name_the_route_not_the_url_and_hold_no_secret() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    app.zoom_app("logged-client", "logged-client-secret").await;
    let created = app
        .create_app(json!({"client_id": "logged-client", "client_secret": "logged-client-secret", "webhook_secret": "logged-hook-secret"}))
        .await;
    assert_eq!(created.status, 201);
    let id = created.json["id"].as_str().expect("id");
    assert_eq!(app.get_app(id).await.status, 200);
    let _ = app.list_apps("?cursor=secret-looking-cursor-value").await;
    let logs = captured_logs();
    assert!(
        logs.contains("route=/api/v1/zoom_oauth_apps/{id}"),
        "{logs}"
    );
    assert!(logs.contains("status=200") && logs.contains("latency_ms="));
    for secret in [
        "logged-client-secret",
        "logged-hook-secret",
        app.key.as_str(),
        "secret-looking-cursor-value",
        id,
    ] {
        assert!(!logs.contains(secret), "{secret} reached the logs");
    }
}

#[tokio::test]
async fn readyz_answers_503_when_the_database_is_gone() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let ready = app.send(app.http.get(app.url("/readyz"))).await;
    assert_eq!(ready.status, 200);

    let cluster = testkit::pg_cluster::shared()
        .await
        .expect("cluster")
        .expect("running, since spawn_app used it");
    let name = app.database_url.rsplit('/').next().expect("database name");
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&cluster.admin_url())
        .await
        .expect("admin connection");
    sqlx::query(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .expect("drop database");

    let down = app.send(app.http.get(app.url("/readyz"))).await;
    down.assert_error(503, "not_ready");
    assert!(!down.text.contains(&app.database_url));
    // The process itself is still up.
    assert_eq!(
        app.send(app.http.get(app.url("/healthz"))).await.status,
        200
    );
}

/// A client generator (and `/docs`) shows the document's examples as what to send
/// and what comes back: each must be valid under its own schema, and every JSON
/// body, request or response, must show one.
#[test]
fn every_body_in_the_document_has_an_example_its_schema_accepts() {
    let problems = testkit::contract::document().example_problems();
    assert!(
        problems.is_empty(),
        "{} problem(s) with the document's examples:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The contract check behind every test server can fail: it refuses answers,
/// accepted bodies and accepted query values the document does not allow.
#[test]
fn the_contract_check_refuses_what_the_document_does_not_allow() {
    use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
    use reqwest::StatusCode;
    let doc = testkit::contract::document();
    let apps = "/api/v1/zoom_oauth_apps";
    let mut json = HeaderMap::new();
    json.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let page = br#"{"next": null, "previous": null, "results": []}"#;
    assert_eq!(doc.check("get", apps, StatusCode::OK, &json, page), Ok(()));
    assert!(doc
        .check("get", apps, StatusCode::OK, &json, br#"{"results": 3}"#)
        .is_err());
    assert!(doc
        .check("get", apps, StatusCode::IM_A_TEAPOT, &json, page)
        .is_err());
    assert!(doc.check_request("post", apps, b"{}").is_err());
    assert_eq!(doc.check_query("get", apps, "page_size=2&foo=bar"), Ok(()));
    for refused in ["page_size=101", "page_size=abc", "page_size=0"] {
        assert!(doc.check_query("get", apps, refused).is_err(), "{refused}");
    }
}
