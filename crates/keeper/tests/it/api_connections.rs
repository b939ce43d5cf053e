//! The Zoom OAuth connections and tokens story (DESIGN.md §4), run on SQLite and
//! PostgreSQL against the Zoom simulator.

use std::collections::HashSet;

use keeper::config::Settings;
use reqwest::Method;
use serde_json::{json, Value};
use testkit::{
    captured_logs, on_both_databases, spawn_app, spawn_app_with, Backend, TestApp, REDIRECT_URI,
};
use zoom_sim::{SimConfig, SimFaults, SimUserStatus};

on_both_databases!(
    connection_lifecycle,
    app_is_inferred_only_when_the_project_has_exactly_one,
    scopes_are_checked_with_granular_and_older_names,
    inactive_zoom_user_is_refused,
    rejected_code_stores_nothing,
    reconnecting_the_same_user_keeps_the_id_and_replaces_the_tokens,
    reconnecting_after_deauthorization_writes_one_state_change,
    deduplication_key_rebinds_to_the_new_user,
    metadata_is_validated,
    list_filters_and_pagination,
    patch_rules,
    cached_access_token_makes_no_zoom_call,
    expired_access_token_is_refreshed_once_and_the_rotated_token_persisted,
    concurrent_requests_share_one_refresh,
    deauthorized_user_is_disconnected_on_the_next_token_request,
    zoom_faults_answer_502_and_429_and_never_disconnect,
    zak_and_onbehalf_tokens_are_minted_for_the_connected_user,
    token_keeper_refreshes_due_connections,
    other_projects_connections_are_invisible,
    bad_input_is_refused_and_changes_nothing,
    sync_is_scheduled_on_request,
    rejected_cached_token_is_refreshed_once_for_a_zak,
    openapi_lists_every_connection_route,
    a_rotated_client_secret_keeps_the_grant_until_the_app_is_patched,
    a_grant_lost_meanwhile_is_erased_by_the_recheck,
    token_keeper_defers_connections_of_a_rate_limited_account,
    a_client_leaving_mid_refresh_loses_nothing,
    a_client_leaving_mid_create_still_gets_the_connection_stored,
    a_create_refused_for_a_taken_deduplication_key_keeps_the_new_grant,
    a_zak_is_minted_with_the_endpoint_the_grant_allows,
);

const CLIENT: &str = "conn-client";

fn is_timestamp(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 27 && s.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(s).is_ok()
    })
}

/// A started app with one registered Zoom app; returns (app, zoa id).
async fn app_with_zoom_app(backend: Backend) -> Option<(TestApp, String)> {
    let app = spawn_app(backend).await?;
    let zoa = app.new_app(CLIENT).await["id"]
        .as_str()
        .expect("app id")
        .to_owned();
    Some((app, zoa))
}

async fn connect_ok(app: &TestApp, extra: Value) -> (String, Value) {
    let (user, a) = app.connect(CLIENT, extra).await;
    assert_eq!(a.status, 201, "{}", a.text);
    (user, a.json)
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

async fn connection_count(app: &TestApp) -> usize {
    let list = app
        .send(app.request(Method::GET, "/api/v1/zoom_oauth_connections?page_size=100"))
        .await;
    assert_eq!(list.status, 200, "{}", list.text);
    list.json["results"].as_array().expect("results").len()
}

async fn outbox(app: &TestApp) -> Vec<keeper::storage::OutboxEventRow> {
    app.keeper
        .store
        .list_outbox_events(&app.project_id, 100)
        .await
        .expect("outbox")
}

async fn connection_lifecycle(backend: Backend) {
    let Some((app, zoa)) = app_with_zoom_app(backend).await else {
        return;
    };
    let (user, c) = connect_ok(
        &app,
        json!({"metadata": {"team": "sales"}, "deduplication_key": "crm-1"}),
    )
    .await;
    let id = id_of(&c);
    assert!(id.starts_with("zoc_") && id.len() == 20, "{id}");
    assert_eq!(c["zoom_oauth_app_id"], zoa.as_str());
    assert_eq!(c["user_id"], user.as_str());
    assert_eq!(c["state"], "connected");
    assert_eq!(c["metadata"], json!({"team": "sales"}));
    assert_eq!(c["deduplication_key"], "crm-1");
    assert_eq!(c["is_local_recording_token_supported"], true);
    assert_eq!(c["is_onbehalf_token_supported"], false);
    assert!(c["connection_failure_data"].is_null());
    assert!(c["scopes"].as_array().is_some_and(|s| !s.is_empty()));
    assert!(
        is_timestamp(&c["created_at"]) && is_timestamp(&c["updated_at"]),
        "{c}"
    );
    assert!(c["account_id"].as_str().is_some_and(|s| !s.is_empty()));
    let keys: HashSet<&str> = c
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let expected: HashSet<&str> = [
        "id",
        "zoom_oauth_app_id",
        "user_id",
        "account_id",
        "email",
        "pmi",
        "state",
        "metadata",
        "deduplication_key",
        "is_local_recording_token_supported",
        "is_onbehalf_token_supported",
        "scopes",
        "connection_failure_data",
        "created_at",
        "updated_at",
        "last_successful_sync_at",
        "last_attempted_sync_at",
        "account_sync",
    ]
    .into();
    assert_eq!(keys, expected);

    // The token from the exchange is kept: the first token request needs no refresh.
    let t = app.access_token(&id).await;
    assert_eq!(t.status, 200, "{}", t.text);
    let token = t.json["token"].as_str().expect("token").to_owned();
    assert!(is_timestamp(&t.json["expires_at"]), "{}", t.text);
    assert_eq!(app.sim_stats().await.refresh_grants, 0);

    let got = app.connection_call(Method::GET, &id, "").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json, c);
    for a in [
        &got,
        &app.connection_call(Method::GET, &id, "/events").await,
    ] {
        assert!(!a.text.contains(&token), "a token leaked: {}", a.text);
    }
    assert_eq!(app.event_kinds(&id).await, vec!["created"]);

    let deleted = app.connection_call(Method::DELETE, &id, "").await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert_eq!(deleted.json, json!({"id": id, "deleted": true}));
    assert_eq!(app.sim_stats().await.revocations, 1);
    app.connection_call(Method::GET, &id, "")
        .await
        .assert_error(404, "not_found");
    app.connection_call(Method::DELETE, &id, "")
        .await
        .assert_error(404, "not_found");
    assert!(!captured_logs().contains(&token), "a token was logged");
}

async fn app_is_inferred_only_when_the_project_has_exactly_one(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // No app at all.
    app.zoom_app(CLIENT, "secret-of-conn-client").await;
    let user = app.zoom_user(None).await;
    let code = app.auth_code(CLIENT, &user, None).await;
    let none = app
        .create_connection(json!({"authorization_code": code, "redirect_uri": REDIRECT_URI}))
        .await;
    none.assert_error(400, "invalid_request");
    assert!(
        none.text
            .contains("No Zoom OAuth App found in this project"),
        "{}",
        none.text
    );

    // Exactly one: inferred.
    let zoa = id_of(&app.new_app(CLIENT).await);
    let one = app.connect_user(CLIENT, &user, json!({})).await;
    assert_eq!(one.status, 201, "{}", one.text);
    assert_eq!(one.json["zoom_oauth_app_id"], zoa.as_str());

    // Two: must be named.
    let other = id_of(&app.new_app("conn-client-2").await);
    let two = app.connect(CLIENT, json!({})).await.1;
    two.assert_error(400, "invalid_request");
    assert!(two.text.contains("several"), "{}", two.text);
    let (_, named) = app
        .connect("conn-client-2", json!({"zoom_oauth_app_id": other}))
        .await;
    assert_eq!(named.status, 201, "{}", named.text);
    assert_eq!(named.json["zoom_oauth_app_id"], other.as_str());
    let unknown = app
        .connect(CLIENT, json!({"zoom_oauth_app_id": "zoa_0000000000000000"}))
        .await
        .1;
    unknown.assert_error(400, "invalid_request");
    assert_eq!(connection_count(&app).await, 2);
}

async fn scopes_are_checked_with_granular_and_older_names(backend: Backend) {
    let Some((app, _)) = app_with_zoom_app(backend).await else {
        return;
    };
    let scopes = |list: &[&str]| Some(list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
    let post = |code: String, extra: Value| {
        let mut body = json!({"authorization_code": code, "redirect_uri": REDIRECT_URI});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        app.create_connection(body)
    };

    let user = app.zoom_user(None).await;
    let code = app
        .auth_code(
            CLIENT,
            &user,
            scopes(&["user:read:user", "meeting:read:list_meetings"]),
        )
        .await;
    let a = post(code, json!({})).await;
    a.assert_error(400, "missing_scopes");
    assert!(
        a.text.contains("user:read:zak") && a.text.contains("meeting:read:local_recording_token"),
        "{}",
        a.text
    );
    assert!(!a.text.contains("list_meetings"), "{}", a.text);
    // Revoking would uninstall the app for the user (DESIGN.md §5): never done to tidy up.
    assert_eq!(
        app.sim_stats().await.revocations,
        0,
        "the new grant is not revoked"
    );
    assert_eq!(connection_count(&app).await, 0);

    // Onbehalf needs user:read:token.
    let code = app
        .auth_code(CLIENT, &user, scopes(&["user:read:user"]))
        .await;
    let a = post(
        code,
        json!({"is_local_recording_token_supported": false, "is_onbehalf_token_supported": true}),
    )
    .await;
    a.assert_error(400, "missing_scopes");
    assert!(a.text.contains("user:read:token"), "{}", a.text);

    // Older scope names count as their granular equivalents.
    let code = app
        .auth_code(
            CLIENT,
            &user,
            scopes(&[
                "user:read",
                "user_zak:read",
                "meeting:read",
                "meeting_token:read:local_recording",
            ]),
        )
        .await;
    let a = post(code, json!({})).await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(connection_count(&app).await, 1);
}

async fn inactive_zoom_user_is_refused(backend: Backend) {
    let Some((app, _)) = app_with_zoom_app(backend).await else {
        return;
    };
    let user = app.zoom_user(Some(SimUserStatus::Inactive)).await;
    let a = app.connect_user(CLIENT, &user, json!({})).await;
    a.assert_error(400, "zoom_user_not_active");
    assert_eq!(connection_count(&app).await, 0);
}

async fn rejected_code_stores_nothing(backend: Backend) {
    let Some((app, _)) = app_with_zoom_app(backend).await else {
        return;
    };
    let a = app
        .create_connection(
            json!({"authorization_code": "not-a-real-code-123456", "redirect_uri": REDIRECT_URI}),
        )
        .await;
    a.assert_error(400, "authorization_code_rejected");
    assert!(!a.text.contains("not-a-real-code-123456"), "{}", a.text);
    // A good code with the wrong redirect URI.
    let user = app.zoom_user(None).await;
    let code = app.auth_code(CLIENT, &user, None).await;
    let a = app
        .create_connection(
            json!({"authorization_code": code, "redirect_uri": "https://elsewhere.example.com/cb"}),
        )
        .await;
    a.assert_error(400, "authorization_code_rejected");
    assert!(!a.text.contains(&code));
    assert!(a.text.contains("Redirect URI mismatch"), "{}", a.text);
    assert!(
        a.text.contains("redirect_uri must be exactly"),
        "{}",
        a.text
    );
    assert_eq!(connection_count(&app).await, 0);
    assert!(!captured_logs().contains(&code), "a code was logged");
    // A used code: Zoom answers `invalid_request` and echoes the code.
    let user = app.zoom_user(None).await;
    let code = app.auth_code(CLIENT, &user, None).await;
    let body = json!({"authorization_code": code, "redirect_uri": REDIRECT_URI});
    assert_eq!(app.create_connection(body.clone()).await.status, 201);
    let a = app.create_connection(body).await;
    a.assert_error(400, "authorization_code_rejected");
    assert!(!a.text.contains(&code), "{}", a.text);
    assert!(a.text.contains("A code works once"), "{}", a.text);
    // An expired code: Zoom's 4733 "Code is expired.".
    app.sim
        .control()
        .set_config(&SimConfig {
            code_ttl_s: Some(0),
            ..Default::default()
        })
        .await
        .expect("sim config");
    let user = app.zoom_user(None).await;
    let expired = app.auth_code(CLIENT, &user, None).await;
    let a = app
        .create_connection(json!({"authorization_code": expired, "redirect_uri": REDIRECT_URI}))
        .await;
    a.assert_error(400, "authorization_code_rejected");
    assert!(a.text.contains("Code is expired"), "{}", a.text);
    assert!(a.text.contains("for 5 minutes"), "{}", a.text);
    assert!(!a.text.contains(&expired));
    assert_eq!(connection_count(&app).await, 1);
    for c in [&code, &expired] {
        assert!(!captured_logs().contains(c.as_str()), "a code was logged");
    }
}

async fn reconnecting_the_same_user_keeps_the_id_and_replaces_the_tokens(backend: Backend) {
    let Some((app, _)) = app_with_zoom_app(backend).await else {
        return;
    };
    let (user, first) = connect_ok(&app, json!({"metadata": {"a": "1"}})).await;
    let id = id_of(&first);
    let old = app.access_token(&id).await.json["token"].clone();
    let again = app
        .connect_user(CLIENT, &user, json!({"is_onbehalf_token_supported": true}))
        .await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(id_of(&again.json), id);
    assert_eq!(again.json["is_onbehalf_token_supported"], true);
    assert_eq!(
        again.json["metadata"],
        json!({"a": "1"}),
        "kept when not sent"
    );
    let new = app.access_token(&id).await.json["token"].clone();
    assert_ne!(old, new, "the new grant's token is served");
    assert_eq!(connection_count(&app).await, 1);
    assert_eq!(app.event_kinds(&id).await, vec!["reconnected", "created"]);
    assert!(
        outbox(&app).await.is_empty(),
        "no state change: it stayed connected"
    );
}

async fn reconnecting_after_deauthorization_writes_one_state_change(backend: Backend) {
    let Some((app, _)) = app_with_zoom_app(backend).await else {
        return;
    };
    app.zoom_token_ttl(60).await;
    let (user, c) = connect_ok(&app, json!({})).await;
    let id = id_of(&c);
    app.sim
        .control()
        .deauthorize(&user, CLIENT)
        .await
        .expect("deauthorize");
    app.access_token(&id)
        .await
        .assert_error(409, "connection_disconnected");
    assert_eq!(outbox(&app).await.len(), 1);

    let again = app.connect_user(CLIENT, &user, json!({})).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(id_of(&again.json), id);
    assert_eq!(again.json["state"], "connected");
    assert!(again.json["connection_failure_data"].is_null());
    let rows = outbox(&app).await;
    assert_eq!(
        rows.len(),
        2,
        "one for the disconnect, one for the reconnect"
    );
    let p = &rows[0].payload;
    assert_eq!(rows[0].trigger, "zoom_oauth_connection.state_change");
    assert_eq!(p["data"]["state"], "connected", "{p}");
    assert_eq!(p["zoom_oauth_connection_id"], id.as_str());
    let t = app.access_token(&id).await;
    assert_eq!(t.status, 200, "{}", t.text);
    assert_eq!(app.sim_stats().await.stale_refresh_token_uses, 0);
}

async fn deduplication_key_rebinds_to_the_new_user(backend: Backend) {
    let Some((app, _)) = app_with_zoom_app(backend).await else {
        return;
    };
    let (first_user, c) = connect_ok(&app, json!({"deduplication_key": "person-7"})).await;
    let id = id_of(&c);
    let (second_user, again) = app
        .connect(CLIENT, json!({"deduplication_key": "person-7"}))
        .await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(id_of(&again.json), id);
    assert_eq!(again.json["user_id"], second_user.as_str());
    assert_ne!(first_user, second_user);
    assert_eq!(
        app.sim_stats().await.revocations,
        1,
        "the old user's grant is revoked"
    );
    assert_eq!(connection_count(&app).await, 1);
    assert_eq!(app.event_kinds(&id).await, vec!["rebound", "created"]);
    let t = app.access_token(&id).await;
    let info = app
        .sim
        .control()
        .token_info(t.json["token"].as_str().expect("token"))
        .await
        .expect("token info")
        .expect("known token");
    assert_eq!(info.user_id.as_deref(), Some(second_user.as_str()));
}

async fn metadata_is_validated(backend: Backend) {
    let Some((app, _)) = app_with_zoom_app(backend).await else {
        return;
    };
    for bad in [
        json!({}),
        json!({"a": 1}),
        json!(["a"]),
        json!("a"),
        json!({"a": "x".repeat(1000)}),
    ] {
        let a = app.connect(CLIENT, json!({"metadata": bad})).await.1;
        a.assert_error(400, "invalid_request");
        assert!(!a.field_problems("metadata").is_empty(), "{}", a.text);
    }
    let a = app
        .connect(
            CLIENT,
            json!({"is_local_recording_token_supported": false, "is_onbehalf_token_supported": false}),
        )
        .await
        .1;
    a.assert_error(400, "invalid_request");
    assert_eq!(connection_count(&app).await, 0);
    let (_, ok) = connect_ok(&app, json!({"metadata": null})).await;
    assert!(ok["metadata"].is_null());
}

async fn list_filters_and_pagination(backend: Backend) {
    let Some((app, zoa)) = app_with_zoom_app(backend).await else {
        return;
    };
    let mut ids = Vec::new();
    let mut users = Vec::new();
    for i in 0..5 {
        let (user, c) = connect_ok(
            &app,
            json!({"deduplication_key": format!("k{i}"), "metadata": {"tier": if i % 2 == 0 { "gold" } else { "free" }}}),
        )
        .await;
        ids.push(id_of(&c));
        users.push(user);
    }
    ids.reverse();
    let page = app
        .send(app.request(Method::GET, "/api/v1/zoom_oauth_connections?page_size=2"))
        .await;
    assert_eq!(page.status, 200, "{}", page.text);
    let mut seen: Vec<String> = page.json["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(id_of)
        .collect();
    let mut next = page.json["next"].as_str().map(str::to_owned);
    while let Some(link) = next {
        let p = app.follow(&link).await;
        assert_eq!(p.status, 200, "{}", p.text);
        seen.extend(
            p.json["results"]
                .as_array()
                .expect("results")
                .iter()
                .map(id_of),
        );
        next = p.json["next"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, ids, "newest first, every one once");

    assert_eq!(
        filtered(&app, format!("user_id={}", users[0])).await,
        vec![ids[4].clone()]
    );
    assert_eq!(
        filtered(&app, "deduplication_key=k1".into()).await,
        vec![ids[3].clone()]
    );
    assert_eq!(
        filtered(&app, format!("zoom_oauth_app_id={zoa}"))
            .await
            .len(),
        5
    );
    assert_eq!(
        filtered(&app, "zoom_oauth_app_id=zoa_0000000000000000".into())
            .await
            .len(),
        0
    );
    assert_eq!(filtered(&app, "state=connected".into()).await.len(), 5);
    // Metadata: the key must hold the value (connections 0, 2 and 4 are gold).
    assert_eq!(
        filtered(&app, "metadata=tier%3Dgold".into()).await,
        vec![ids[0].clone(), ids[2].clone(), ids[4].clone()]
    );
    assert_eq!(filtered(&app, "metadata=gold%3Dtier".into()).await.len(), 0);
    let m = app
        .send(app.request(
            Method::GET,
            "/api/v1/zoom_oauth_connections?metadata=tier%3Dfree&page_size=1",
        ))
        .await;
    let next = m.json["next"].as_str().expect("next link");
    assert!(next.contains("metadata=tier%3Dfree"), "{next}");
    app.send(app.request(Method::GET, "/api/v1/zoom_oauth_connections?metadata=tier"))
        .await
        .assert_error(400, "invalid_request");
    assert_eq!(filtered(&app, "state=disconnected".into()).await.len(), 0);
    // Filters survive pagination links.
    let a = app
        .send(app.request(
            Method::GET,
            "/api/v1/zoom_oauth_connections?state=connected&page_size=4",
        ))
        .await;
    let next = a.json["next"].as_str().expect("next link");
    assert!(next.contains("state=connected"), "{next}");
    assert_eq!(
        app.follow(next).await.json["results"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    app.send(app.request(Method::GET, "/api/v1/zoom_oauth_connections?state=gone"))
        .await
        .assert_error(400, "invalid_request");
}

async fn filtered(app: &TestApp, q: String) -> Vec<String> {
    let a = app
        .send(app.request(Method::GET, &format!("/api/v1/zoom_oauth_connections?{q}")))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.json["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(id_of)
        .collect()
}

async fn patch_rules(backend: Backend) {
    let Some((app, _)) = app_with_zoom_app(backend).await else {
        return;
    };
    // `a`'s user granted the scopes of both capabilities, `b`'s only local recording's.
    let user = app.zoom_user(None).await;
    let both = testkit::scopes_asked_for(&json!({"is_onbehalf_token_supported": true}));
    let code = app.auth_code(CLIENT, &user, Some(both)).await;
    let a = app
        .create_connection(json!({"authorization_code": code, "redirect_uri": REDIRECT_URI, "deduplication_key": "one"}))
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let a = a.json;
    let (_, b) = connect_ok(&app, json!({"deduplication_key": "two"})).await;
    // Turning on a capability the grant does not cover is refused, naming the scope.
    let refused = app
        .send(
            app.request(
                Method::PATCH,
                &format!("/api/v1/zoom_oauth_connections/{}", id_of(&b)),
            )
            .json(&json!({"is_onbehalf_token_supported": true})),
        )
        .await;
    refused.assert_error(400, "missing_scopes");
    assert!(refused.text.contains("user:read:token"), "{}", refused.text);
    let id = id_of(&a);
    let patch = |body: Value| {
        app.send(
            app.request(
                Method::PATCH,
                &format!("/api/v1/zoom_oauth_connections/{id}"),
            )
            .json(&body),
        )
    };
    let p = patch(json!({"metadata": {"x": "y"}, "is_onbehalf_token_supported": true})).await;
    assert_eq!(p.status, 200, "{}", p.text);
    assert_eq!(p.json["metadata"], json!({"x": "y"}));
    assert_eq!(p.json["is_onbehalf_token_supported"], true);
    patch(
        json!({"is_local_recording_token_supported": false, "is_onbehalf_token_supported": false}),
    )
    .await
    .assert_error(400, "invalid_request");
    patch(json!({"deduplication_key": "two"}))
        .await
        .assert_error(409, "deduplication_key_taken");
    let p = patch(json!({"metadata": null, "deduplication_key": null})).await;
    assert_eq!(p.status, 200, "{}", p.text);
    assert!(p.json["metadata"].is_null() && p.json["deduplication_key"].is_null());
    assert_eq!(
        app.connection_call(Method::GET, &id_of(&b), "").await.json["deduplication_key"],
        "two"
    );
}

async fn cached_access_token_makes_no_zoom_call(backend: Backend) {
    let Some((app, _)) = app_with_zoom_app(backend).await else {
        return;
    };
    let (_, c) = connect_ok(&app, json!({})).await;
    let id = id_of(&c);
    let before = app.sim_stats().await.api_calls;
    let first = app.access_token(&id).await;
    for _ in 0..5 {
        let t = app.access_token(&id).await;
        assert_eq!(t.status, 200, "{}", t.text);
        assert_eq!(t.json, first.json);
    }
    let after = app.sim_stats().await;
    assert_eq!(after.refresh_grants, 0);
    assert_eq!(after.api_calls, before, "no call to Zoom at all");
}

async fn expired_access_token_is_refreshed_once_and_the_rotated_token_persisted(backend: Backend) {
    let Some((app, _)) = app_with_zoom_app(backend).await else {
        return;
    };
    // Tokens that live under the 120 s floor need a refresh on every request.
    app.zoom_token_ttl(100).await;
    let (user, c) = connect_ok(&app, json!({})).await;
    let id = id_of(&c);
    for round in 1..=3 {
        let t = app.access_token(&id).await;
        assert_eq!(t.status, 200, "{}", t.text);
        let info = app
            .sim
            .control()
            .token_info(t.json["token"].as_str().expect("token"))
            .await
            .expect("info")
            .expect("known token");
        assert_eq!(info.user_id.as_deref(), Some(user.as_str()));
        assert_eq!(info.status, "active");
        assert!(
            !captured_logs().contains(t.json["token"].as_str().expect("token")),
            "a refreshed token was logged"
        );
        let s = app.sim_stats().await;
        assert_eq!(s.refresh_grants, round);
        assert_eq!(s.stale_refresh_token_uses, 0);
    }
    // Long-lived tokens again: the last refreshed one is cached.
    app.zoom_token_ttl(3599).await;
    let t = app.access_token(&id).await;
    assert_eq!(t.status, 200);
    let t2 = app.access_token(&id).await;
    assert_eq!(t.json, t2.json);
    assert_eq!(app.sim_stats().await.refresh_grants, 4);
    let kinds = app.event_kinds(&id).await;
    assert_eq!(kinds.iter().filter(|k| *k == "token_refreshed").count(), 4);
    // The log pages newest first like every list.
    let mut page = app
        .connection_call(Method::GET, &id, "/events?page_size=2")
        .await;
    let mut paged = Vec::new();
    loop {
        assert_eq!(page.status, 200, "{}", page.text);
        for e in page.json["results"].as_array().expect("results") {
            paged.push(e["kind"].as_str().expect("kind").to_owned());
        }
        match page.json["next"].as_str() {
            Some(next) => page = app.follow(next).await,
            None => break,
        }
    }
    assert_eq!(paged, kinds);
    assert_eq!(paged.last().map(String::as_str), Some("created"));
}

async fn concurrent_requests_share_one_refresh(backend: Backend) {
    let Some((app, _)) = app_with_zoom_app(backend).await else {
        return;
    };
    app.zoom_token_ttl(100).await;
    let (_, c) = connect_ok(&app, json!({})).await;
    let id = id_of(&c);
    app.zoom_token_ttl(3599).await;
    let answers = futures::future::join_all((0..40).map(|_| app.access_token(&id))).await;
    let first = &answers[0];
    for a in &answers {
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.json, first.json);
    }
    let s = app.sim_stats().await;
    assert_eq!(s.refresh_grants, 1);
    assert_eq!(s.stale_refresh_token_uses, 0);
}

async fn deauthorized_user_is_disconnected_on_the_next_token_request(backend: Backend) {
    let Some((app, _)) = app_with_zoom_app(backend).await else {
        return;
    };
    app.zoom_token_ttl(60).await;
    let (user, c) = connect_ok(&app, json!({"metadata": {"who": "me"}})).await;
    let id = id_of(&c);
    app.sim
        .control()
        .deauthorize(&user, CLIENT)
        .await
        .expect("deauthorize");
    let a = app.access_token(&id).await;
    a.assert_error(409, "connection_disconnected");
    assert!(a.text.contains("authorise the app again"), "{}", a.text);
    let again = app.access_token(&id).await;
    again.assert_error(409, "connection_disconnected");
    app.connection_call(Method::POST, &id, "/zak_token")
        .await
        .assert_error(409, "connection_disconnected");

    let got = app.connection_call(Method::GET, &id, "").await.json;
    assert_eq!(got["state"], "disconnected");
    assert_eq!(got["connection_failure_data"]["code"], "invalid_grant");
    assert!(is_timestamp(&got["connection_failure_data"]["timestamp"]));
    let rows = outbox(&app).await;
    assert_eq!(rows.len(), 1, "exactly one state change");
    let p = &rows[0].payload;
    assert_eq!(p["trigger"], "zoom_oauth_connection.state_change");
    assert_eq!(p["zoom_oauth_connection_id"], id.as_str());
    assert_eq!(p["zoom_oauth_connection_metadata"], json!({"who": "me"}));
    assert_eq!(p["user_id"], user.as_str());
    assert_eq!(p["data"]["state"], "disconnected");
    assert_eq!(
        p["data"]["connection_failure_data"]["code"],
        "invalid_grant"
    );
    let kinds = app.event_kinds(&id).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "disconnected").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        app.sim_stats().await.refresh_grants,
        0,
        "no grant was ever issued by refresh"
    );
}

async fn zoom_faults_answer_502_and_429_and_never_disconnect(backend: Backend) {
    let Some((app, _)) = app_with_zoom_app(backend).await else {
        return;
    };
    app.zoom_token_ttl(100).await;
    let (_, c) = connect_ok(&app, json!({})).await;
    let id = id_of(&c);
    let fault = |status: u16| SimFaults {
        status_code: Some(status),
        ..Default::default()
    };
    app.sim
        .control()
        .set_faults(&fault(503))
        .await
        .expect("faults");
    app.access_token(&id)
        .await
        .assert_error(502, "zoom_unavailable");
    app.sim
        .control()
        .set_faults(&fault(429))
        .await
        .expect("faults");
    let limited = app.access_token(&id).await;
    limited.assert_error(429, "zoom_rate_limited");
    assert_eq!(
        limited
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let got = app.connection_call(Method::GET, &id, "").await.json;
    assert_eq!(got["state"], "connected");
    app.sim
        .control()
        .set_faults(&SimFaults::default())
        .await
        .expect("faults");
    let ok = app.access_token(&id).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert!(outbox(&app).await.is_empty());
    assert_eq!(app.sim_stats().await.stale_refresh_token_uses, 0);
}

async fn zak_and_onbehalf_tokens_are_minted_for_the_connected_user(backend: Backend) {
    let Some((app, _)) = app_with_zoom_app(backend).await else {
        return;
    };
    let (user, c) = connect_ok(&app, json!({"is_onbehalf_token_supported": true})).await;
    let id = id_of(&c);
    let info = |token: Value| {
        let control = app.sim.control();
        async move {
            control
                .token_info(token.as_str().expect("token"))
                .await
                .expect("info")
                .expect("known token")
        }
    };
    let zak = app.connection_call(Method::POST, &id, "/zak_token").await;
    assert_eq!(zak.status, 200, "{}", zak.text);
    let i = info(zak.json["token"].clone()).await;
    assert_eq!(
        (i.token_type.as_str(), i.user_id.as_deref()),
        ("zak", Some(user.as_str()))
    );

    let obf = app
        .send(
            app.request(
                Method::POST,
                &format!("/api/v1/zoom_oauth_connections/{id}/onbehalf_token"),
            )
            .json(&json!({"meeting_id": "123456789"})),
        )
        .await;
    assert_eq!(obf.status, 200, "{}", obf.text);
    let i = info(obf.json["token"].clone()).await;
    assert_eq!(i.token_type, "onbehalf");
    assert_eq!(i.user_id.as_deref(), Some(user.as_str()));
    assert_eq!(i.meeting_id, Some(123456789));
    // Without a body at all.
    let plain = app
        .connection_call(Method::POST, &id, "/onbehalf_token")
        .await;
    assert_eq!(plain.status, 200, "{}", plain.text);
    for bad in [
        json!({"meeting_id": "12345"}),
        json!({"meeting_id": "abcdefghij"}),
        json!({"meeting": 1}),
    ] {
        app.send(
            app.request(
                Method::POST,
                &format!("/api/v1/zoom_oauth_connections/{id}/onbehalf_token"),
            )
            .json(&bad),
        )
        .await
        .assert_error(400, "invalid_request");
    }

    // Capability off.
    let (_, other) = connect_ok(&app, json!({})).await;
    app.connection_call(Method::POST, &id_of(&other), "/onbehalf_token")
        .await
        .assert_error(400, "capability_not_enabled");
    for t in [&zak, &obf] {
        assert!(!captured_logs().contains(t.json["token"].as_str().expect("token")));
    }
}

async fn token_keeper_refreshes_due_connections(backend: Backend) {
    let Some(app) = spawn_app_with(
        backend,
        Settings {
            token_refresh_max_age: Some("2s".into()),
            ..Settings::default()
        },
    )
    .await
    else {
        return;
    };
    app.new_app(CLIENT).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(id_of(&connect_ok(&app, json!({})).await.1));
    }
    let (_stop, stopping) = tokio::sync::watch::channel(false);
    let round = keeper::token_keeper::run_once(&app.keeper, &stopping)
        .await
        .expect("round");
    assert_eq!(round.claimed, 0, "nothing is due yet");
    app.keeper
        .clock
        .advance(std::time::Duration::from_millis(2100));
    // Shutting down: what is claimed is handed back, not refreshed.
    let (_stopped, stopped) = tokio::sync::watch::channel(true);
    let round = keeper::token_keeper::run_once(&app.keeper, &stopped)
        .await
        .expect("round");
    assert_eq!((round.claimed, round.released), (3, 3), "{round:?}");
    assert_eq!(app.sim_stats().await.refresh_grants, 0);
    let round = keeper::token_keeper::run_once(&app.keeper, &stopping)
        .await
        .expect("round");
    assert_eq!(round.claimed, 3, "{round:?}");
    assert_eq!(round.refreshed, 3, "{round:?}");
    let round = keeper::token_keeper::run_once(&app.keeper, &stopping)
        .await
        .expect("round");
    assert_eq!(round.claimed, 0, "refreshed ones are not due again at once");
    let s = app.sim_stats().await;
    assert_eq!(s.refresh_grants, 3);
    assert_eq!(s.stale_refresh_token_uses, 0);
    for id in &ids {
        assert_eq!(app.access_token(id).await.status, 200);
    }
    assert_eq!(
        app.sim_stats().await.refresh_grants,
        3,
        "the kept tokens are cached"
    );
}

async fn other_projects_connections_are_invisible(backend: Backend) {
    let Some((app, _)) = app_with_zoom_app(backend).await else {
        return;
    };
    let (_, c) = connect_ok(&app, json!({})).await;
    let id = id_of(&c);
    let (_, other_key) = app.other_project("other").await;
    for (method, suffix) in [
        (Method::GET, ""),
        (Method::DELETE, ""),
        (Method::GET, "/events"),
        (Method::POST, "/access_token"),
        (Method::POST, "/zak_token"),
        (Method::POST, "/onbehalf_token"),
    ] {
        let a = app
            .send(app.request_as(
                &other_key,
                method,
                &format!("/api/v1/zoom_oauth_connections/{id}{suffix}"),
            ))
            .await;
        a.assert_error(404, "not_found");
    }
    let patch = app
        .send(
            app.request_as(
                &other_key,
                Method::PATCH,
                &format!("/api/v1/zoom_oauth_connections/{id}"),
            )
            .json(&json!({"metadata": {"a": "b"}})),
        )
        .await;
    patch.assert_error(404, "not_found");
    let list = app
        .send(app.request_as(&other_key, Method::GET, "/api/v1/zoom_oauth_connections"))
        .await;
    assert_eq!(list.json["results"], json!([]));
    // Connecting a user from the other project cannot reach this project's app.
    let code = app
        .auth_code(CLIENT, &app.zoom_user(None).await, None)
        .await;
    let a = app
        .send(
            app.request_as(&other_key, Method::POST, "/api/v1/zoom_oauth_connections")
                .json(&json!({"authorization_code": code, "redirect_uri": REDIRECT_URI, "zoom_oauth_app_id": c["zoom_oauth_app_id"]})),
        )
        .await;
    a.assert_error(400, "invalid_request");
    assert_eq!(app.connection_call(Method::GET, &id, "").await.json, c);
    app.connection_call(Method::GET, "zoc_bad", "")
        .await
        .assert_error(404, "not_found");
}

async fn bad_input_is_refused_and_changes_nothing(backend: Backend) {
    let Some((app, _)) = app_with_zoom_app(backend).await else {
        return;
    };
    let (_, c) = connect_ok(&app, json!({"metadata": {"k": "v"}})).await;
    let id = id_of(&c);
    let raw = |method: Method, path: String, body: &'static str| {
        app.send(
            app.request(method, &path)
                .header("content-type", "application/json")
                .body(body),
        )
    };
    let create = "/api/v1/zoom_oauth_connections".to_owned();
    let one = format!("/api/v1/zoom_oauth_connections/{id}");
    raw(Method::POST, create.clone(), "{\"authorization_code\": ")
        .await
        .assert_error(400, "invalid_json");
    raw(Method::POST, create.clone(), "[1, 2]")
        .await
        .assert_error(400, "invalid_request");
    let a = raw(
        Method::POST,
        create.clone(),
        r#"{"authorization_code": "x", "redirect_uri": "https://a.example/cb", "surprise": 1}"#,
    )
    .await;
    a.assert_error(400, "invalid_request");
    assert_eq!(a.field_problems("surprise"), vec!["Unknown field."]);
    raw(
        Method::POST,
        create.clone(),
        r#"{"authorization_code": 5, "redirect_uri": "https://a.example/cb"}"#,
    )
    .await
    .assert_error(400, "invalid_request");
    raw(
        Method::POST,
        create,
        r#"{"authorization_code": "x", "redirect_uri": "https://a.example/cb", "is_onbehalf_token_supported": "yes"}"#,
    )
    .await
    .assert_error(400, "invalid_request");
    raw(Method::PATCH, one.clone(), r#"{"metadata": {"k": 1}}"#)
        .await
        .assert_error(400, "invalid_request");
    raw(Method::PATCH, one.clone(), r#"{"state": "connected"}"#)
        .await
        .assert_error(400, "invalid_request");
    raw(Method::PATCH, one, r#"{"metadata": "#)
        .await
        .assert_error(400, "invalid_json");
    assert_eq!(app.connection_call(Method::GET, &id, "").await.json, c);
    assert_eq!(connection_count(&app).await, 1);
    assert_eq!(app.sim_stats().await.authorization_code_grants, 1);
}

async fn sync_is_scheduled_on_request(backend: Backend) {
    let Some((app, _)) = app_with_zoom_app(backend).await else {
        return;
    };
    let (_, c) = connect_ok(&app, json!({})).await;
    let id = id_of(&c);
    let row = || async {
        app.keeper
            .store
            .get_connection(&app.project_id, &id)
            .await
            .expect("read")
            .expect("row")
    };
    assert!(
        row().await.next_sync_at.is_some(),
        "a sync is scheduled on connect"
    );
    let a = app.connection_call(Method::POST, &id, "/sync").await;
    assert_eq!(a.status, 202, "{}", a.text);
    assert_eq!(a.json, json!({"id": id, "status": "scheduled"}));
    let (_, onbehalf_only) = connect_ok(
        &app,
        json!({"is_local_recording_token_supported": false, "is_onbehalf_token_supported": true}),
    )
    .await;
    let other = id_of(&onbehalf_only);
    let stored = app
        .keeper
        .store
        .get_connection(&app.project_id, &other)
        .await
        .expect("read")
        .expect("row");
    assert!(
        stored.next_sync_at.is_none(),
        "no sync without local recording"
    );
    app.connection_call(Method::POST, &other, "/sync")
        .await
        .assert_error(400, "capability_not_enabled");
    app.connection_call(Method::POST, "zoc_0000000000000000", "/sync")
        .await
        .assert_error(404, "not_found");
}

async fn rejected_cached_token_is_refreshed_once_for_a_zak(backend: Backend) {
    let Some((app, _)) = app_with_zoom_app(backend).await else {
        return;
    };
    let (user, c) = connect_ok(&app, json!({})).await;
    let id = id_of(&c);
    // Zoom's clock runs ahead: the token we hold as valid is expired there (code 124).
    app.sim
        .control()
        .set_config(&SimConfig {
            clock_offset_s: Some(7200),
            ..Default::default()
        })
        .await
        .expect("sim config");
    let zak = app.connection_call(Method::POST, &id, "/zak_token").await;
    assert_eq!(zak.status, 200, "{}", zak.text);
    let info = app
        .sim
        .control()
        .token_info(zak.json["token"].as_str().expect("token"))
        .await
        .expect("info")
        .expect("known");
    assert_eq!(info.user_id.as_deref(), Some(user.as_str()));
    let s = app.sim_stats().await;
    assert_eq!(s.refresh_grants, 1, "one forced refresh");
    assert_eq!(s.stale_refresh_token_uses, 0);
    assert_eq!(
        app.connection_call(Method::GET, &id, "").await.json["state"],
        "connected"
    );
}

async fn openapi_lists_every_connection_route(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let doc = app.send(app.http.get(app.url("/openapi.json"))).await;
    assert_eq!(doc.status, 200);
    let paths = &doc.json["paths"];
    for (path, method) in [
        ("/api/v1/zoom_oauth_connections", "post"),
        ("/api/v1/zoom_oauth_connections", "get"),
        ("/api/v1/zoom_oauth_connections/{id}", "get"),
        ("/api/v1/zoom_oauth_connections/{id}", "patch"),
        ("/api/v1/zoom_oauth_connections/{id}", "delete"),
        ("/api/v1/zoom_oauth_connections/{id}/events", "get"),
        ("/api/v1/zoom_oauth_connections/{id}/sync", "post"),
        ("/api/v1/zoom_oauth_connections/{id}/access_token", "post"),
        ("/api/v1/zoom_oauth_connections/{id}/zak_token", "post"),
        ("/api/v1/zoom_oauth_connections/{id}/onbehalf_token", "post"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path} missing");
    }
}

/// The app's client secret changes at Zoom: returns the new one.
async fn rotate_secret_at_zoom(app: &TestApp) -> String {
    let secret = "rotated-secret-of-conn-client".to_owned();
    app.sim
        .control()
        .update_app(
            CLIENT,
            &zoom_sim::SimAppPatch {
                client_secret: Some(secret.clone()),
                ..Default::default()
            },
        )
        .await
        .expect("sim update_app");
    secret
}

/// Polls the connection until its state is `state` (the re-check runs in the
/// background after the PATCH answers).
async fn wait_for_state(app: &TestApp, id: &str, state: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let got = app.connection_call(Method::GET, id, "").await;
        assert_eq!(got.status, 200, "{}", got.text);
        if got.json["state"] == state {
            return got.json;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {} after 20 s: {}",
            got.json["state"],
            got.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn stored(app: &TestApp, id: &str) -> keeper::storage::ConnectionRow {
    app.keeper
        .store
        .connection_by_id(id)
        .await
        .expect("read")
        .expect("exists")
}

async fn a_rotated_client_secret_keeps_the_grant_until_the_app_is_patched(backend: Backend) {
    let Some((app, zoa)) = app_with_zoom_app(backend).await else {
        return;
    };
    // Tokens under the 120 s floor: every token request refreshes.
    app.zoom_token_ttl(100).await;
    let (user, c) = connect_ok(&app, json!({"metadata": {"who": "me"}})).await;
    let id = id_of(&c);
    let secret = rotate_secret_at_zoom(&app).await;

    let a = app.access_token(&id).await;
    a.assert_error(409, "connection_disconnected");
    assert!(a.text.contains("client secret"), "{}", a.text);
    let got = app.connection_call(Method::GET, &id, "").await.json;
    assert_eq!(got["state"], "disconnected");
    assert_eq!(got["connection_failure_data"]["code"], "invalid_client");
    assert!(
        got["connection_failure_data"]["error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("/api/v1/zoom_oauth_apps/{zoa}"))),
        "{got}"
    );
    let row = stored(&app, &id).await;
    assert!(row.refresh_token.is_some(), "the user's grant is kept");
    assert!(row.access_token.is_none());
    let rows = outbox(&app).await;
    assert_eq!(rows.len(), 1, "exactly one state change");
    assert_eq!(rows[0].payload["data"]["state"], "disconnected");
    assert_eq!(
        rows[0].payload["data"]["connection_failure_data"]["code"],
        "invalid_client"
    );

    // A wrong new secret is refused and re-checks nothing.
    app.patch_app(&zoa, json!({"client_secret": "still-wrong"}))
        .await
        .assert_error(400, "invalid_client_credentials");
    let patched = app.patch_app(&zoa, json!({"client_secret": secret})).await;
    assert_eq!(patched.status, 200, "{}", patched.text);

    let back = wait_for_state(&app, &id, "connected").await;
    assert!(back["connection_failure_data"].is_null(), "{back}");
    let t = app.access_token(&id).await;
    assert_eq!(t.status, 200, "{}", t.text);
    let info = app
        .sim
        .control()
        .token_info(t.json["token"].as_str().expect("token"))
        .await
        .expect("info")
        .expect("known token");
    assert_eq!(info.user_id.as_deref(), Some(user.as_str()));
    assert_eq!(info.status, "active");
    let s = app.sim_stats().await;
    assert_eq!(s.stale_refresh_token_uses, 0);
    assert!(s.refresh_grants >= 1);
    let rows = outbox(&app).await;
    assert_eq!(
        rows.len(),
        2,
        "one for the disconnect, one for the reconnect"
    );
    assert_eq!(rows[0].payload["data"]["state"], "connected");
    assert!(rows[0].payload["data"]["connection_failure_data"].is_null());
    assert_eq!(
        rows[0].payload["zoom_oauth_connection_metadata"],
        json!({"who": "me"})
    );
    let kinds = app.event_kinds(&id).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "disconnected").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "reconnected").count(),
        1,
        "{kinds:?}"
    );
    assert!(
        !captured_logs().contains(&secret),
        "the client secret was logged"
    );
}

async fn a_grant_lost_meanwhile_is_erased_by_the_recheck(backend: Backend) {
    let Some((app, zoa)) = app_with_zoom_app(backend).await else {
        return;
    };
    app.zoom_token_ttl(100).await;
    let (user, c) = connect_ok(&app, json!({})).await;
    let id = id_of(&c);
    let secret = rotate_secret_at_zoom(&app).await;
    app.access_token(&id)
        .await
        .assert_error(409, "connection_disconnected");
    // While it waits for the new secret, the user removes the app.
    app.sim
        .control()
        .deauthorize(&user, CLIENT)
        .await
        .expect("deauthorize");
    let patched = app.patch_app(&zoa, json!({"client_secret": secret})).await;
    assert_eq!(patched.status, 200, "{}", patched.text);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let row = loop {
        let row = stored(&app, &id).await;
        if row.refresh_token.is_none() {
            break row;
        }
        assert!(std::time::Instant::now() < deadline, "never re-checked");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(row.access_token.is_none());
    let got = app.connection_call(Method::GET, &id, "").await.json;
    assert_eq!(got["state"], "disconnected");
    assert_eq!(got["connection_failure_data"]["code"], "invalid_grant");
    assert!(
        got["connection_failure_data"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("authorise the app again")),
        "{got}"
    );
    assert_eq!(outbox(&app).await.len(), 1, "it never changed state again");
    let kinds = app.event_kinds(&id).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "disconnected").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(app.sim_stats().await.stale_refresh_token_uses, 0);
}

async fn token_keeper_defers_connections_of_a_rate_limited_account(backend: Backend) {
    let Some(app) = spawn_app_with(
        backend,
        Settings {
            token_refresh_max_age: Some("1s".into()),
            ..Settings::default()
        },
    )
    .await
    else {
        return;
    };
    app.new_app(CLIENT).await;
    let (_, c) = connect_ok(&app, json!({})).await;
    let id = id_of(&c);
    let account = c["account_id"].as_str().expect("account_id").to_owned();
    app.keeper
        .clock
        .advance(std::time::Duration::from_millis(1100));
    // Zoom said 429 for this account two minutes' worth.
    let pause = std::time::Duration::from_secs(120);
    app.keeper
        .zoom_accounts
        .pause_until(&account, tokio::time::Instant::now() + pause);
    let (_stop, running) = tokio::sync::watch::channel(false);
    let round = keeper::token_keeper::run_once(&app.keeper, &running)
        .await
        .expect("round");
    assert_eq!((round.claimed, round.deferred), (1, 1), "{round:?}");
    assert_eq!(
        app.sim_stats().await.refresh_grants,
        0,
        "no call for a paused account"
    );
    let row = stored(&app, &id).await;
    assert!(row.lease_owner.is_none(), "handed back");
    let due_in = row.refresh_due_at.expect("due") - app.keeper.clock.now();
    assert!(
        due_in > chrono::Duration::seconds(100) && due_in <= chrono::Duration::seconds(120),
        "due again when the pause ends, not before: {due_in}"
    );
    let round = keeper::token_keeper::run_once(&app.keeper, &running)
        .await
        .expect("round");
    assert_eq!(round.claimed, 0, "{round:?}");
    assert_eq!(
        app.access_token(&id).await.status,
        200,
        "API requests do not wait"
    );
}

/// Zoom's token endpoint answers only after `ms`.
async fn slow_token_endpoint(app: &TestApp, ms: u64) {
    app.sim
        .control()
        .set_faults(&SimFaults {
            latency_ms: Some(ms),
            paths: Some(vec!["/oauth/token".to_owned()]),
            ..Default::default()
        })
        .await
        .expect("faults");
}

/// Sends `builder` and gives up (dropping the request, as a client that goes away
/// does) well before Zoom answers.
async fn leave_early(builder: reqwest::RequestBuilder) {
    let sent = builder
        .timeout(std::time::Duration::from_millis(300))
        .send()
        .await;
    assert!(
        sent.as_ref().is_err_and(|e| e.is_timeout()),
        "the request should have timed out: {sent:?}"
    );
}

async fn a_client_leaving_mid_refresh_loses_nothing(backend: Backend) {
    let Some((app, _)) = app_with_zoom_app(backend).await else {
        return;
    };
    app.zoom_token_ttl(100).await;
    let (_, c) = connect_ok(&app, json!({})).await;
    let id = id_of(&c);
    // Tokens under the 120 s floor: every request refreshes.
    slow_token_endpoint(&app, 1_500).await;
    leave_early(app.request(
        Method::POST,
        &format!("/api/v1/zoom_oauth_connections/{id}/access_token"),
    ))
    .await;
    // The refresh goes on without its caller, commits the rotated refresh token
    // and hands the lease back: the next request gets the refreshed token at once.
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), app.access_token(&id))
        .await
        .expect("the next token request does not wait for a lease left behind");
    assert_eq!(next.status, 200, "{}", next.text);
    app.sim
        .control()
        .set_faults(&SimFaults::default())
        .await
        .expect("faults");
    let got = app.connection_call(Method::GET, &id, "").await;
    assert_eq!(got.json["state"], "connected", "{}", got.text);
    // Every refresh used the refresh token the one before it stored.
    let again = app.access_token(&id).await;
    assert_eq!(again.status, 200, "{}", again.text);
    let s = app.sim_stats().await;
    // The abandoned request's refresh, which the next request waited for and took
    // (issue 10: a waiter accepts the refresh it waited for, even for tokens under
    // the 120 s floor), and the last request's own.
    assert_eq!(s.refresh_grants, 2);
    assert_eq!(s.stale_refresh_token_uses, 0);
    assert_eq!(s.invalid_grant_errors, 0);
    let stored = stored(&app, &id).await;
    assert!(stored.lease_until.is_none(), "the lease was handed back");
}

async fn a_client_leaving_mid_create_still_gets_the_connection_stored(backend: Backend) {
    let Some((app, _)) = app_with_zoom_app(backend).await else {
        return;
    };
    let user = app.zoom_user(None).await;
    let code = app.auth_code(CLIENT, &user, None).await;
    slow_token_endpoint(&app, 1_500).await;
    leave_early(
        app.request(Method::POST, "/api/v1/zoom_oauth_connections")
            .json(&json!({"authorization_code": code, "redirect_uri": REDIRECT_URI})),
    )
    .await;
    // Zoom used the code up: the grant must end up stored, not orphaned.
    let mut stored_after = None;
    for _ in 0..100 {
        if connection_count(&app).await == 1 {
            stored_after = Some(());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(stored_after.is_some(), "the exchanged grant was stored");
    app.sim
        .control()
        .set_faults(&SimFaults::default())
        .await
        .expect("faults");
    let s = app.sim_stats().await;
    assert_eq!(s.authorization_code_grants, 1);
    assert_eq!(s.revocations, 0);
}

async fn a_create_refused_for_a_taken_deduplication_key_keeps_the_new_grant(backend: Backend) {
    let Some((app, _)) = app_with_zoom_app(backend).await else {
        return;
    };
    connect_ok(&app, json!({"deduplication_key": "one"})).await;
    let (user, _) = connect_ok(&app, json!({"deduplication_key": "two"})).await;
    // Tokens under the 120 s floor: the next token request must refresh.
    app.zoom_token_ttl(100).await;
    let before = app.sim_stats().await;
    // The user already has a connection; the key belongs to another one.
    app.connect_user(CLIENT, &user, json!({"deduplication_key": "one"}))
        .await
        .assert_error(409, "deduplication_key_taken");
    let after = app.sim_stats().await;
    assert_eq!(
        after.authorization_code_grants,
        before.authorization_code_grants + 1
    );
    assert_eq!(
        after.revocations, before.revocations,
        "revoking would uninstall the app for the user"
    );
    assert_eq!(connection_count(&app).await, 2);
    // Zoom keeps only the user's newest grant, so it was stored on their connection:
    // the connection still refreshes, with no stale refresh token used.
    let listed = app
        .send(app.request(
            Method::GET,
            &format!("/api/v1/zoom_oauth_connections?user_id={user}"),
        ))
        .await;
    let id = listed.json["results"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let t = app.access_token(&id).await;
    assert_eq!(t.status, 200, "{}", t.text);
    let s = app.sim_stats().await;
    assert_eq!(s.refresh_grants, before.refresh_grants + 1);
    assert_eq!(s.stale_refresh_token_uses, 0);
}

/// Zoom's scope table: `GET /users/me/token?type=zak` needs `user:read:token` or
/// classic `user:read`; `GET /users/me/zak` needs `user:read:zak` or `user_zak:read`
/// and gives a ZAK that lives five minutes. A ZAK comes from the endpoint the
/// connection's grant opens.
async fn a_zak_is_minted_with_the_endpoint_the_grant_allows(backend: Backend) {
    let Some((app, _)) = app_with_zoom_app(backend).await else {
        return;
    };
    let calls = |s: &zoom_sim::SimStats, endpoint: &str| {
        s.api_calls_by_endpoint.get(endpoint).copied().unwrap_or(0)
    };
    let zak_of = |id: String| {
        let app = &app;
        async move {
            let zak = app.connection_call(Method::POST, &id, "/zak_token").await;
            assert_eq!(zak.status, 200, "{}", zak.text);
            app.sim
                .control()
                .token_info(zak.json["token"].as_str().expect("token"))
                .await
                .expect("info")
                .expect("known")
        }
    };
    let post = |user: String, scopes: &[&str], extra: Value| {
        let app = &app;
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        async move {
            let code = app.auth_code(CLIENT, &user, Some(scopes)).await;
            let mut body = json!({"authorization_code": code, "redirect_uri": REDIRECT_URI});
            for (k, v) in extra.as_object().expect("object") {
                body[k] = v.clone();
            }
            let a = app.create_connection(body).await;
            assert_eq!(a.status, 201, "{}", a.text);
            id_of(&a.json)
        }
    };

    // The local recording scope set has user:read:zak, not user:read:token.
    let (_, c) = connect_ok(&app, json!({})).await;
    let before = app.sim_stats().await;
    let info = zak_of(id_of(&c)).await;
    let after = app.sim_stats().await;
    assert_eq!(info.token_type, "zak");
    assert_eq!(
        calls(&after, "GET /v2/users/me/zak") - calls(&before, "GET /v2/users/me/zak"),
        1
    );
    assert_eq!(
        calls(&after, "GET /v2/users/me/token"),
        calls(&before, "GET /v2/users/me/token")
    );
    let lifetime = info.expires_at.expect("expiry") - info.issued_at.expect("issue");
    assert_eq!(lifetime.num_seconds(), 300);

    // A classic-scope app: user:read opens /users/me/token (ZAK and onbehalf), and
    // nothing else opens /users/me/zak.
    let user = app.zoom_user(None).await;
    let id = post(
        user,
        &[
            "user:read",
            "meeting:read",
            "meeting_token:read:local_recording",
        ],
        json!({"is_onbehalf_token_supported": true}),
    )
    .await;
    let before = app.sim_stats().await;
    let info = zak_of(id.clone()).await;
    let after = app.sim_stats().await;
    assert_eq!(info.token_type, "zak");
    assert_eq!(
        calls(&after, "GET /v2/users/me/token") - calls(&before, "GET /v2/users/me/token"),
        1
    );
    assert_eq!(
        calls(&after, "GET /v2/users/me/zak"),
        calls(&before, "GET /v2/users/me/zak")
    );
    let obf = app
        .connection_call(Method::POST, &id, "/onbehalf_token")
        .await;
    assert_eq!(obf.status, 200, "{}", obf.text);

    // Both granted: type=zak is preferred.
    let user = app.zoom_user(None).await;
    let mut both: Vec<&str> = zoom_sim::LOCAL_RECORDING_SCOPES.to_vec();
    both.push("user:read:token");
    let id = post(user, &both, json!({})).await;
    let before = app.sim_stats().await;
    zak_of(id).await;
    let after = app.sim_stats().await;
    assert_eq!(
        calls(&after, "GET /v2/users/me/token") - calls(&before, "GET /v2/users/me/token"),
        1
    );
}
