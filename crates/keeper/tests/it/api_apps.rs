//! The Zoom OAuth apps API story (DESIGN.md §4), run on SQLite and PostgreSQL.

use std::collections::HashSet;

use keeper::config::Settings;
use reqwest::Method;
use serde_json::json;
use testkit::{captured_logs, on_both_databases, spawn_app, spawn_app_with, Answer, Backend};

on_both_databases!(
    app_lifecycle,
    pagination_walks_both_ways,
    invalid_credentials_store_nothing,
    duplicate_client_id_is_a_conflict,
    app_with_connections_cannot_be_deleted,
    other_projects_apps_are_invisible,
    ids_of_the_wrong_shape_are_not_found,
    bad_input_is_refused_and_changes_nothing,
);

fn is_timestamp(v: &serde_json::Value) -> bool {
    // RFC 3339, microseconds, Z: 2024-01-02T03:04:05.123456Z
    v.as_str().is_some_and(|s| {
        s.len() == 27
            && s.ends_with('Z')
            && s.as_bytes()[19] == b'.'
            && chrono::DateTime::parse_from_rfc3339(s).is_ok()
    })
}

fn assert_no_secret(a: &Answer, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !a.text.contains(s),
            "a secret leaked into a response: {}",
            a.text
        );
    }
}

async fn app_lifecycle(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let secret = "lifecycle-client-secret-1";
    let new_secret = "lifecycle-client-secret-2";
    let webhook_secret = "lifecycle-webhook-secret";
    app.zoom_app("lifecycle-client", secret).await;

    // Create: secrets are trimmed before the Zoom check.
    let created = app
        .create_app(json!({
            "client_id": "lifecycle-client",
            "client_secret": format!("  {secret}\n"),
            "webhook_secret": webhook_secret,
            "kind": "account_level",
        }))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_no_secret(&created, &[secret, webhook_secret]);
    let a = &created.json;
    let id = a["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("zoa_") && id.len() == 20, "{id}");
    assert_eq!(a["client_id"], "lifecycle-client");
    assert_eq!(a["kind"], "account_level");
    assert_eq!(a["has_webhook_secret"], true);
    assert_eq!(a["connection_count"], 0);
    assert_eq!(
        a["webhook_url"],
        format!("{}/external_webhooks/zoom/oauth_apps/{id}", app.base)
    );
    assert!(a["last_verified_webhook_received_at"].is_null());
    assert!(a["last_unverified_webhook_received_at"].is_null());
    assert!(
        is_timestamp(&a["created_at"]) && is_timestamp(&a["updated_at"]),
        "{a}"
    );
    let expected_keys: HashSet<&str> = [
        "id",
        "client_id",
        "kind",
        "has_webhook_secret",
        "webhook_url",
        "connect_redirect_url",
        "connection_count",
        "last_verified_webhook_received_at",
        "last_unverified_webhook_received_at",
        "webhook_events_stale_since",
        "webhook_events_problem",
        "created_at",
        "updated_at",
    ]
    .into();
    let keys: HashSet<&str> = a
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, expected_keys);

    // Get and list show the same object.
    let got = app.get_app(&id).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json, created.json);
    let list = app.list_apps("").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json["results"], json!([created.json]));
    assert!(list.json["next"].is_null() && list.json["previous"].is_null());

    // The stored secret is the trimmed one: the sealed value opens to it.
    let row = app
        .keeper
        .store
        .get_app(&app.project_id, &id)
        .await
        .expect("store")
        .expect("row");
    let opened = app
        .keeper
        .vault
        .open_str(
            keeper::vault::Slot::app_client_secret(&id),
            &row.client_secret,
        )
        .expect("opens");
    assert_eq!(secrecy::ExposeSecret::expose_secret(&opened), secret);

    // A new client secret is checked at Zoom like on create.
    let refused = app
        .patch_app(&id, json!({"client_secret": new_secret}))
        .await;
    refused.assert_error(400, "invalid_client_credentials");
    app.zoom_app("lifecycle-client", new_secret).await;
    let patched = app
        .patch_app(
            &id,
            json!({"client_secret": new_secret, "client_id": "lifecycle-client"}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_no_secret(&patched, &[secret, new_secret, webhook_secret]);
    assert!(patched.json["updated_at"].as_str() > created.json["updated_at"].as_str());
    assert_eq!(patched.json["created_at"], created.json["created_at"]);

    // webhook_secret: null removes it; a value sets it again.
    let removed = app.patch_app(&id, json!({"webhook_secret": null})).await;
    assert_eq!(removed.status, 200, "{}", removed.text);
    assert_eq!(removed.json["has_webhook_secret"], false);
    let set = app
        .patch_app(&id, json!({"webhook_secret": "another-hook-secret"}))
        .await;
    assert_eq!(set.json["has_webhook_secret"], true);

    // Delete, then it is gone.
    let deleted = app.delete_app(&id).await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert_eq!(deleted.json, json!({"id": id, "deleted": true}));
    app.get_app(&id).await.assert_error(404, "not_found");
    app.delete_app(&id).await.assert_error(404, "not_found");
    assert!(app.all_app_ids().await.is_empty());

    let logs = captured_logs();
    for s in [secret, new_secret, webhook_secret, app.key.as_str()] {
        assert!(!logs.contains(s), "a secret reached the logs");
    }
}

async fn pagination_walks_both_ways(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(
            app.new_app(&format!("page-client-{i}")).await["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    let ids = |a: &Answer| -> Vec<String> {
        a.json["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| r["id"].as_str().expect("id").to_owned())
            .collect()
    };

    let p1 = app.list_apps("?page_size=2").await;
    assert_eq!(ids(&p1), newest_first[0..2]);
    assert!(p1.json["previous"].is_null());
    let next = p1.json["next"].as_str().expect("next link");
    assert!(
        next.starts_with(&format!("{}/api/v1/zoom_oauth_apps?cursor=", app.base)),
        "{next}"
    );

    let p2 = app.follow(next).await;
    assert_eq!(ids(&p2), newest_first[2..4]);
    let p3 = app.follow(p2.json["next"].as_str().expect("next")).await;
    assert_eq!(ids(&p3), newest_first[4..5]);
    assert!(p3.json["next"].is_null());

    // And back.
    let back2 = app
        .follow(p3.json["previous"].as_str().expect("previous"))
        .await;
    assert_eq!(ids(&back2), newest_first[2..4]);
    let back1 = app
        .follow(back2.json["previous"].as_str().expect("previous"))
        .await;
    assert_eq!(ids(&back1), newest_first[0..2]);
    assert!(back1.json["previous"].is_null(), "{}", back1.text);
    assert!(back1.json["next"].is_string());

    // Default and maximum page sizes.
    assert_eq!(ids(&app.list_apps("").await).len(), 5);
    assert_eq!(ids(&app.list_apps("?page_size=100").await).len(), 5);
}

async fn invalid_credentials_store_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.zoom_app("real-client", "the-real-secret").await;
    let token_calls = || async {
        let stats = app.sim.control().stats().await.expect("stats");
        stats
            .api_calls_by_endpoint
            .get("POST /oauth/token")
            .copied()
            .unwrap_or(0)
    };
    let before = token_calls().await;
    let wrong = app
        .create_app(json!({"client_id": "real-client", "client_secret": "a-wrong-secret"}))
        .await;
    wrong.assert_error(400, "invalid_client_credentials");
    assert_no_secret(&wrong, &["a-wrong-secret"]);
    let unknown = app
        .create_app(json!({"client_id": "nobody-at-zoom", "client_secret": "whatever"}))
        .await;
    unknown.assert_error(400, "invalid_client_credentials");
    let after = token_calls().await;
    assert_eq!(after - before, 2, "each create asked Zoom once");
    assert!(app.all_app_ids().await.is_empty());
}

async fn duplicate_client_id_is_a_conflict(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let first = app.new_app("dup-client").await;
    let again = app
        .create_app(json!({"client_id": "dup-client", "client_secret": "secret-of-dup-client"}))
        .await;
    again.assert_error(409, "duplicate_client_id");
    assert_eq!(
        app.all_app_ids().await,
        vec![first["id"].as_str().expect("id").to_owned()]
    );

    // Another project may use the same client_id.
    let (_, other_key) = app.other_project("dup-other").await;
    let other = app
        .send(
            app.request_as(&other_key, Method::POST, "/api/v1/zoom_oauth_apps")
                .json(&json!({"client_id": "dup-client", "client_secret": "secret-of-dup-client"})),
        )
        .await;
    assert_eq!(other.status, 201, "{}", other.text);
}

async fn app_with_connections_cannot_be_deleted(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let a = app.new_app("busy-client").await;
    let id = a["id"].as_str().expect("id");
    app.insert_connection(id).await;
    assert_eq!(app.get_app(id).await.json["connection_count"], 1);
    app.delete_app(id)
        .await
        .assert_error(409, "app_has_connections");
    assert_eq!(app.get_app(id).await.status, 200, "nothing was deleted");
}

async fn other_projects_apps_are_invisible(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mine = app.new_app("private-client").await;
    let id = mine["id"].as_str().expect("id");
    let (_, other_key) = app.other_project("intruder").await;
    let path = format!("/api/v1/zoom_oauth_apps/{id}");
    let missing = "/api/v1/zoom_oauth_apps/zoa_0000000000000000";

    for method in [Method::GET, Method::DELETE] {
        let theirs = app
            .send(app.request_as(&other_key, method.clone(), &path))
            .await;
        let nothing = app.send(app.request_as(&other_key, method, missing)).await;
        theirs.assert_error(404, "not_found");
        assert_eq!(
            theirs.json, nothing.json,
            "indistinguishable from a missing id"
        );
    }
    let patch = app
        .send(
            app.request_as(&other_key, Method::PATCH, &path)
                .json(&json!({"webhook_secret": "hijack"})),
        )
        .await;
    patch.assert_error(404, "not_found");
    let list = app
        .send(app.request_as(&other_key, Method::GET, "/api/v1/zoom_oauth_apps"))
        .await;
    assert_eq!(list.json["results"], json!([]));
    // Untouched for its owner.
    let still = app.get_app(id).await;
    assert_eq!(still.json, mine);
}

async fn ids_of_the_wrong_shape_are_not_found(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let a = app.new_app("shape-client").await;
    let id = a["id"].as_str().expect("id");
    let suffix = &id[4..];
    for wrong in [
        format!("zoc_{suffix}"),
        format!("prj_{suffix}"),
        suffix.to_owned(),
        format!("{id}x"),
        "zoa_%F0%9F%98%80".to_owned(),
        "%FF".to_owned(),
    ] {
        app.get_app(&wrong).await.assert_error(404, "not_found");
        app.patch_app(&wrong, json!({}))
            .await
            .assert_error(404, "not_found");
        app.delete_app(&wrong).await.assert_error(404, "not_found");
    }
    assert_eq!(app.all_app_ids().await.len(), 1);
}

async fn bad_input_is_refused_and_changes_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let existing = app.new_app("steady-client").await;
    let id = existing["id"].as_str().expect("id").to_owned();
    app.zoom_app("fresh-client", "fresh-secret").await;
    let post = |body: reqwest::Body, content_type: &str| {
        app.request(Method::POST, "/api/v1/zoom_oauth_apps")
            .header("content-type", content_type)
            .body(body)
    };
    let patch = |body: reqwest::Body| {
        app.request(Method::PATCH, &format!("/api/v1/zoom_oauth_apps/{id}"))
            .header("content-type", "application/json")
            .body(body)
    };
    const JSON: &str = "application/json";

    let a = app
        .send(post(r#"{"client_id": "fresh-client", "#.into(), JSON))
        .await;
    a.assert_error(400, "invalid_json");

    let a = app
        .send(post(
            r#"{"client_id": 5, "client_secret": "fresh-secret"}"#.into(),
            JSON,
        ))
        .await;
    a.assert_error(400, "invalid_request");
    assert!(!a.field_problems("client_id").is_empty());

    let a = app
        .send(post(
            r#"{"client_id": "fresh-client", "client_secret": 123456789}"#.into(),
            JSON,
        ))
        .await;
    a.assert_error(400, "invalid_request");
    assert!(
        !a.text.contains("123456789"),
        "the bad value is not echoed: {}",
        a.text
    );

    let a = app
        .send(post(
            r#"{"client_id": "fresh-client", "client_secret": "fresh-secret", "colour": "red"}"#
                .into(),
            JSON,
        ))
        .await;
    a.assert_error(400, "invalid_request");
    assert_eq!(a.field_problems("colour"), vec!["Unknown field."]);

    let a = app
        .send(post(r#"{"client_id": "fresh-client"}"#.into(), JSON))
        .await;
    a.assert_error(400, "invalid_request");
    assert_eq!(
        a.field_problems("client_secret"),
        vec!["This field is required."]
    );

    let a = app
        .create_app(json!({"client_id": "fresh-client", "client_secret": " \t\n "}))
        .await;
    a.assert_error(400, "invalid_request");
    assert!(!a.field_problems("client_secret").is_empty());

    let a = app
        .create_app(
            json!({"client_id": "  ", "client_secret": "fresh-secret", "webhook_secret": ""}),
        )
        .await;
    a.assert_error(400, "invalid_request");
    assert!(!a.field_problems("client_id").is_empty());
    assert!(!a.field_problems("webhook_secret").is_empty());

    let a = app
        .create_app(json!({"client_id": "fresh-client", "client_secret": "fresh-secret", "kind": "team_level"}))
        .await;
    a.assert_error(400, "invalid_request");
    assert!(!a.field_problems("kind").is_empty());

    let big = format!(
        r#"{{"client_id": "fresh-client", "client_secret": "{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    app.send(post(big.into(), JSON))
        .await
        .assert_error(413, "payload_too_large");

    let not_utf8: Vec<u8> =
        b"{\"client_id\": \"fresh-\xff\xfe\", \"client_secret\": \"fresh-secret\"}".to_vec();
    app.send(post(not_utf8.into(), JSON))
        .await
        .assert_error(400, "invalid_json");

    app.send(post(
        r#"{"client_id": "fresh-client", "client_secret": "fresh-secret"}"#.into(),
        "text/plain",
    ))
    .await
    .assert_error(415, "unsupported_media_type");
    app.send(
        app.request(Method::POST, "/api/v1/zoom_oauth_apps")
            .body("{}"),
    )
    .await
    .assert_error(415, "unsupported_media_type");

    // PATCH: client_id never changes; blank secrets and unknown fields are refused.
    let a = app
        .patch_app(&id, json!({"client_id": "another-client"}))
        .await;
    a.assert_error(400, "client_id_immutable");
    assert!(!a.field_problems("client_id").is_empty());
    app.patch_app(&id, json!({"webhook_secret": "   "}))
        .await
        .assert_error(400, "invalid_request");
    app.patch_app(&id, json!({"client_secret": ""}))
        .await
        .assert_error(400, "invalid_request");
    app.patch_app(&id, json!({"kind": "account_level"}))
        .await
        .assert_error(400, "invalid_request");
    app.send(patch(b"{\"webhook_secret\": ".to_vec().into()))
        .await
        .assert_error(400, "invalid_json");
    app.send(patch(b"[1, 2]".to_vec().into()))
        .await
        .assert_error(400, "invalid_request");
    app.send(patch(b"\"a string\"".to_vec().into()))
        .await
        .assert_error(400, "invalid_request");

    // Lists: bad page sizes and cursors.
    for q in [
        "?page_size=0",
        "?page_size=101",
        "?page_size=abc",
        "?page_size=-3",
    ] {
        let a = app.list_apps(q).await;
        a.assert_error(400, "invalid_request");
        assert!(!a.field_problems("page_size").is_empty());
    }
    for _ in 0..2 {
        app.new_app(&format!("cursor-client-{}", rand_suffix()))
            .await;
    }
    let first = app.list_apps("?page_size=1").await;
    let next = first.json["next"].as_str().expect("next").to_owned();
    let cursor = next
        .split("cursor=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .expect("cursor");
    let mut tampered: Vec<char> = cursor.chars().collect();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    for bad in [tampered.as_str(), "garbage", "%00%01", "AAAA"] {
        app.list_apps(&format!("?cursor={bad}"))
            .await
            .assert_error(400, "invalid_cursor");
    }

    // Nothing changed: no new app beyond the three made on purpose, and the
    // original is exactly as it was.
    assert_eq!(app.all_app_ids().await.len(), 3);
    assert_eq!(app.get_app(&id).await.json, existing);
}

fn rand_suffix() -> String {
    keeper::ids::IdKind::App.generate()[4..12].to_owned()
}

#[tokio::test]
async fn zoom_unreachable_is_a_bad_gateway() {
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        Settings {
            // Nothing listens on port 9 (discard) on loopback here.
            zoom_oauth_url: Some("http://127.0.0.1:9".into()),
            ..Settings::default()
        },
    )
    .await
    else {
        return;
    };
    let a = app
        .create_app(json!({"client_id": "any", "client_secret": "any-secret"}))
        .await;
    a.assert_error(502, "zoom_unavailable");
    assert!(app.all_app_ids().await.is_empty());
}

#[tokio::test]
async fn zoom_server_errors_are_a_bad_gateway() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    app.zoom_app("flaky-client", "flaky-secret").await;
    app.sim
        .control()
        .set_faults(&zoom_sim::SimFaults {
            status_code: Some(503),
            ..Default::default()
        })
        .await
        .expect("faults");
    let a = app
        .create_app(json!({"client_id": "flaky-client", "client_secret": "flaky-secret"}))
        .await;
    a.assert_error(502, "zoom_unavailable");
    assert!(app.all_app_ids().await.is_empty());
}
