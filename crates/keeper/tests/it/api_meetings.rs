//! `GET /api/v1/zoom_meetings` (DESIGN.md §4 "Meetings"), on SQLite and PostgreSQL.

use chrono::{Duration, Utc};
use keeper::storage::{MeetingIndexChange, MeetingRow, MeetingSource};
use reqwest::Method;
use serde_json::{json, Value};
use testkit::{on_both_databases, spawn_app, Backend, TestApp};

on_both_databases!(
    index_is_listed_newest_first_with_links_that_keep_filters,
    filters_narrow_the_list,
    bad_filters_are_refused,
    other_projects_meetings_are_invisible,
    openapi_lists_the_meetings_and_webhook_routes,
);

const CLIENT: &str = "meetings-client";

/// One app and `n` connections; returns (app, zoa id, connection ids).
async fn with_connections(backend: Backend, n: usize) -> Option<(TestApp, String, Vec<String>)> {
    let app = spawn_app(backend).await?;
    let zoa = app.new_app(CLIENT).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut ids = Vec::new();
    for _ in 0..n {
        let (_, a) = app.connect(CLIENT, json!({})).await;
        assert_eq!(a.status, 201, "{}", a.text);
        ids.push(a.json["id"].as_str().expect("id").to_owned());
    }
    Some((app, zoa, ids))
}

/// Indexes `meeting_id` for `connection_id` as a webhook would, `age_s` seconds ago.
async fn index(app: &TestApp, zoa: &str, connection_id: &str, meeting_id: &str, age_s: i64) {
    let row = MeetingRow {
        project_id: app.project_id.clone(),
        app_id: zoa.to_owned(),
        meeting_id: meeting_id.to_owned(),
        connection_id: connection_id.to_owned(),
        source: MeetingSource::Webhook,
        topic: Some(format!("Meeting {meeting_id}")),
        start_time: Some(Utc::now() + Duration::days(1)),
        synced_at: Utc::now() - Duration::seconds(age_s),
        host_user_id: None,
    };
    app.keeper
        .store
        .apply_meeting_change(&MeetingIndexChange::Upsert(row))
        .await
        .expect("index");
}

async fn list(app: &TestApp, query: &str) -> testkit::Answer {
    app.send(app.request(Method::GET, &format!("/api/v1/zoom_meetings{query}")))
        .await
}

fn ids(page: &Value) -> Vec<String> {
    page["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|m| m["meeting_id"].as_str().expect("meeting_id").to_owned())
        .collect()
}

fn is_timestamp(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 27 && s.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(s).is_ok()
    })
}

async fn index_is_listed_newest_first_with_links_that_keep_filters(backend: Backend) {
    let Some((app, zoa, conns)) = with_connections(backend, 1).await else {
        return;
    };
    for i in 0..5i64 {
        index(
            &app,
            &zoa,
            &conns[0],
            &format!("{}", 900_000_000 + i),
            100 - i,
        )
        .await;
    }
    let first = list(&app, "?page_size=2").await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(ids(&first.json), ["900000004", "900000003"]);
    assert!(first.json["previous"].is_null());
    let m = &first.json["results"][0];
    let keys: Vec<&str> = m
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "meeting_id",
            "source",
            "start_time",
            "synced_at",
            "topic",
            "zoom_oauth_app_id",
            "zoom_oauth_connection_id"
        ]
    );
    assert_eq!(m["zoom_oauth_app_id"], zoa.as_str());
    assert_eq!(m["zoom_oauth_connection_id"], conns[0].as_str());
    assert_eq!(m["source"], "webhook");
    assert_eq!(m["topic"], "Meeting 900000004");
    assert!(
        is_timestamp(&m["start_time"]) && is_timestamp(&m["synced_at"]),
        "{m}"
    );

    let mut all = ids(&first.json);
    let mut page = first;
    while let Some(next) = page.json["next"].as_str().map(str::to_owned) {
        page = app.follow(&next).await;
        assert_eq!(page.status, 200, "{}", page.text);
        all.extend(ids(&page.json));
    }
    assert_eq!(
        all,
        [
            "900000004",
            "900000003",
            "900000002",
            "900000001",
            "900000000"
        ]
    );
    let previous = page.json["previous"]
        .as_str()
        .expect("previous link")
        .to_owned();
    let back = app.follow(&previous).await;
    assert_eq!(ids(&back.json), ["900000002", "900000001"]);

    // Filters survive in the links.
    let filtered = list(
        &app,
        &format!("?zoom_oauth_connection_id={}&page_size=1", conns[0]),
    )
    .await;
    let next = filtered.json["next"].as_str().expect("next");
    assert!(
        next.contains(&format!("zoom_oauth_connection_id={}", conns[0])),
        "{next}"
    );
}

async fn filters_narrow_the_list(backend: Backend) {
    let Some((app, zoa, conns)) = with_connections(backend, 2).await else {
        return;
    };
    index(&app, &zoa, &conns[0], "900000001", 3).await;
    index(&app, &zoa, &conns[1], "900000002", 2).await;
    index(&app, &zoa, &conns[1], "900000003", 1).await;
    let by_connection = list(&app, &format!("?zoom_oauth_connection_id={}", conns[1])).await;
    assert_eq!(ids(&by_connection.json), ["900000003", "900000002"]);
    let by_meeting = list(&app, "?meeting_id=900000001").await;
    assert_eq!(ids(&by_meeting.json), ["900000001"]);
    let both = list(
        &app,
        &format!(
            "?meeting_id=900000001&zoom_oauth_connection_id={}",
            conns[1]
        ),
    )
    .await;
    assert!(ids(&both.json).is_empty());
    let none = list(&app, "?meeting_id=123456789").await;
    assert_eq!(none.status, 200);
    assert!(ids(&none.json).is_empty() && none.json["next"].is_null());
}

async fn bad_filters_are_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    for (query, field) in [
        ("?meeting_id=abc", "meeting_id"),
        ("?meeting_id=12345678", "meeting_id"),
        ("?meeting_id=123456789012345678901", "meeting_id"),
        ("?meeting_id=%27%20OR%201%3D1", "meeting_id"),
        ("?zoom_oauth_connection_id=nope", "zoom_oauth_connection_id"),
        (
            "?zoom_oauth_connection_id=zoa_abcdefghijklmnop",
            "zoom_oauth_connection_id",
        ),
        ("?page_size=0", "page_size"),
        ("?page_size=many", "page_size"),
    ] {
        let a = list(&app, query).await;
        a.assert_error(400, "invalid_request");
        assert!(!a.field_problems(field).is_empty(), "{query}: {}", a.text);
    }
    list(&app, "?cursor=garbage")
        .await
        .assert_error(400, "invalid_cursor");
    app.send(app.http.get(app.url("/api/v1/zoom_meetings")))
        .await
        .assert_error(401, "missing_authorization");
}

async fn other_projects_meetings_are_invisible(backend: Backend) {
    let Some((app, zoa, conns)) = with_connections(backend, 1).await else {
        return;
    };
    index(&app, &zoa, &conns[0], "900000001", 1).await;
    let (_, other_key) = app.other_project("other").await;
    let theirs = app
        .send(app.request_as(&other_key, Method::GET, "/api/v1/zoom_meetings"))
        .await;
    assert_eq!(theirs.status, 200, "{}", theirs.text);
    assert!(ids(&theirs.json).is_empty());
    let by_id = app
        .send(app.request_as(
            &other_key,
            Method::GET,
            &format!(
                "/api/v1/zoom_meetings?zoom_oauth_connection_id={}",
                conns[0]
            ),
        ))
        .await;
    assert!(ids(&by_id.json).is_empty());
    let by_meeting = app
        .send(app.request_as(
            &other_key,
            Method::GET,
            "/api/v1/zoom_meetings?meeting_id=900000001",
        ))
        .await;
    assert!(ids(&by_meeting.json).is_empty());
    assert_eq!(ids(&list(&app, "").await.json), ["900000001"]);
}

async fn openapi_lists_the_meetings_and_webhook_routes(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let doc = app.send(app.http.get(app.url("/openapi.json"))).await;
    assert_eq!(doc.status, 200);
    let paths = &doc.json["paths"];
    assert!(paths["/api/v1/zoom_meetings"]["get"].is_object(), "{paths}");
    assert!(
        paths["/external_webhooks/zoom/oauth_apps/{app_id}"]["post"].is_object(),
        "{paths}"
    );
}
