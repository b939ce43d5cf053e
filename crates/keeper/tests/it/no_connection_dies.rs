//! No healthy connection dies by our hand (DESIGN.md §5): Zoom keeps one grant per
//! app and user and a new code exchange supersedes the user's earlier one, so the
//! newest grant Zoom issued is the one stored — when a re-authorisation fails for
//! another reason, and when several creates for one user race — and a grant is never
//! revoked to tidy up (revoking uninstalls the app for the user). Run on SQLite and
//! PostgreSQL against the simulator, which supersedes earlier tokens as Zoom does.

use reqwest::Method;
use serde_json::{json, Value};
use testkit::{on_both_databases, spawn_app, Backend, TestApp, REDIRECT_URI};
use zoom_sim::{SimFaults, SimUserPatch, SimUserStatus};

on_both_databases!(
    a_reauthorisation_with_too_few_scopes_keeps_the_connection_working,
    a_reauthorisation_of_an_inactive_user_keeps_the_connection_working,
    a_reauthorisation_survives_users_me_failing_for_a_while,
    concurrent_creates_for_one_user_keep_the_newest_grant,
    a_create_whose_grant_was_superseded_answers_with_the_users_connection,
    deleting_a_connection_revokes_the_stored_grant_once,
    a_lease_left_by_a_dead_process_delays_a_token_by_seconds,
    concurrent_requests_share_a_refresh_of_short_lived_tokens,
    a_reauthorisation_survives_the_database_failing_for_a_while,
);

const CLIENT: &str = "reauth-client";

async fn app_with_zoom_app(backend: Backend) -> Option<TestApp> {
    let app = spawn_app(backend).await?;
    app.new_app(CLIENT).await;
    Some(app)
}

/// Zoom's access tokens live under the 120 s floor: the next token request refreshes.
async fn short_tokens(app: &TestApp) {
    app.zoom_token_ttl(100).await;
}

fn code_body(code: &str) -> Value {
    json!({"authorization_code": code, "redirect_uri": REDIRECT_URI})
}

/// The connection refreshes (a new refresh token is used at Zoom) and hands out a
/// token Zoom accepts, with no stale or superseded refresh token ever used.
async fn assert_refreshes(app: &TestApp, id: &str, user: &str) {
    let before = app.sim_stats().await;
    let t = app.access_token(id).await;
    assert_eq!(t.status, 200, "{}", t.text);
    let info = app
        .sim
        .control()
        .token_info(t.json["token"].as_str().expect("token"))
        .await
        .expect("info")
        .expect("a token Zoom issued");
    assert_eq!(info.status, "active");
    assert_eq!(info.user_id.as_deref(), Some(user));
    let after = app.sim_stats().await;
    assert_eq!(after.refresh_grants, before.refresh_grants + 1, "{after:?}");
    assert_eq!(after.stale_refresh_token_uses, 0, "{after:?}");
    assert_eq!(
        after.superseded_refresh_token_uses, before.superseded_refresh_token_uses,
        "the stored grant was the newest: {after:?}"
    );
    assert_eq!(after.revocations, 0, "nothing was revoked: {after:?}");
    assert_eq!(app.connection(id).await["state"], "connected");
}

async fn connected_user(app: &TestApp) -> (String, String) {
    let (user, a) = app.connect(CLIENT, json!({})).await;
    assert_eq!(a.status, 201, "{}", a.text);
    (user, a.json["id"].as_str().expect("id").to_owned())
}

async fn a_reauthorisation_with_too_few_scopes_keeps_the_connection_working(backend: Backend) {
    let Some(app) = app_with_zoom_app(backend).await else {
        return;
    };
    let (user, id) = connected_user(&app).await;
    short_tokens(&app).await;
    // The user authorises again but leaves out the local recording scope.
    let code = app
        .auth_code(
            CLIENT,
            &user,
            Some(vec!["user:read:user".into(), "user:read:zak".into()]),
        )
        .await;
    app.create_connection(code_body(&code))
        .await
        .assert_error(400, "missing_scopes");
    // Zoom superseded the old grant; the new one was kept on the connection, whose
    // settings did not change.
    let c = app.connection(&id).await;
    assert_eq!(c["is_local_recording_token_supported"], true);
    assert!(app
        .event_kinds(&id)
        .await
        .contains(&"reauthorization_failed".to_owned()));
    assert_refreshes(&app, &id, &user).await;
}

async fn a_reauthorisation_of_an_inactive_user_keeps_the_connection_working(backend: Backend) {
    let Some(app) = app_with_zoom_app(backend).await else {
        return;
    };
    let (user, id) = connected_user(&app).await;
    short_tokens(&app).await;
    let control = app.sim.control();
    let patch = |status| SimUserPatch {
        status: Some(status),
        ..Default::default()
    };
    control
        .update_user(&user, &patch(SimUserStatus::Inactive))
        .await
        .expect("patch");
    app.connect_user(CLIENT, &user, json!({}))
        .await
        .assert_error(400, "zoom_user_not_active");
    control
        .update_user(&user, &patch(SimUserStatus::Active))
        .await
        .expect("patch");
    assert_refreshes(&app, &id, &user).await;
}

async fn a_reauthorisation_survives_users_me_failing_for_a_while(backend: Backend) {
    let Some(app) = app_with_zoom_app(backend).await else {
        return;
    };
    let (user, id) = connected_user(&app).await;
    short_tokens(&app).await;
    // Zoom's users/me fails four times in a row after the exchange.
    app.sim
        .control()
        .set_faults(&SimFaults {
            fail_next: Some(4),
            paths: Some(vec!["/v2/users/me".into()]),
            ..Default::default()
        })
        .await
        .expect("faults");
    let a = app.connect_user(CLIENT, &user, json!({})).await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.json["id"], id.as_str());
    assert_refreshes(&app, &id, &user).await;
}

async fn concurrent_creates_for_one_user_keep_the_newest_grant(backend: Backend) {
    let Some(app) = app_with_zoom_app(backend).await else {
        return;
    };
    short_tokens(&app).await;
    app.sim
        .control()
        .set_faults(&SimFaults {
            latency_ms: Some(30),
            ..Default::default()
        })
        .await
        .expect("latency");
    let user = app.zoom_user(None).await;
    let mut ids = std::collections::BTreeSet::new();
    for round in 0..20 {
        // A double-submitted callback or a retrying backend: 2 or 3 codes of one
        // user exchanged at about the same time.
        let n = 2 + round % 2;
        let mut codes = Vec::new();
        for _ in 0..n {
            codes.push(app.auth_code(CLIENT, &user, None).await);
        }
        let answers =
            futures::future::join_all(codes.iter().map(|c| app.create_connection(code_body(c))))
                .await;
        for a in &answers {
            // Each answer is the user's one connection, or says a newer authorisation
            // of the user replaced this one.
            if a.status == 201 {
                ids.insert(a.json["id"].as_str().expect("id").to_owned());
            } else {
                a.assert_error(409, "authorization_superseded");
            }
        }
        assert!(answers.iter().any(|a| a.status == 201), "round {round}");
        assert_eq!(
            ids.len(),
            1,
            "round {round}: one connection per user: {ids:?}"
        );
        let id = ids.first().expect("id").clone();
        // The grant stored is the one Zoom issued last: it refreshes.
        let t = app.access_token(&id).await;
        assert_eq!(t.status, 200, "round {round}: {}", t.text);
        let s = app.sim_stats().await;
        assert_eq!(s.stale_refresh_token_uses, 0, "round {round}: {s:?}");
        assert_eq!(
            s.superseded_refresh_token_uses, 0,
            "round {round}: the grant stored was the newest: {s:?}"
        );
        assert_eq!(s.revocations, 0, "round {round}: {s:?}");
    }
    let id = ids.first().expect("id").clone();
    assert_eq!(app.connection(&id).await["state"], "connected");
}

async fn a_create_whose_grant_was_superseded_answers_with_the_users_connection(backend: Backend) {
    let Some(app) = app_with_zoom_app(backend).await else {
        return;
    };
    let (user, id) = connected_user(&app).await;
    short_tokens(&app).await;
    // Two authorisations; the older code is posted last.
    let older = app.auth_code(CLIENT, &user, None).await;
    let newer = app.auth_code(CLIENT, &user, None).await;
    // Exchange both at Zoom in order (older first), as two racing creates would,
    // by posting them with Zoom's users/me slowed: the older exchange happens, then
    // the newer one supersedes it before the older create stores anything.
    app.sim
        .control()
        .set_faults(&SimFaults {
            latency_ms: Some(400),
            paths: Some(vec!["/v2/users/me".into()]),
            ..Default::default()
        })
        .await
        .expect("faults");
    let first = app.create_connection(code_body(&older));
    let second = async {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        app.create_connection(code_body(&newer)).await
    };
    let (a, b) = tokio::join!(first, second);
    assert_eq!(b.status, 201, "{}", b.text);
    assert_eq!(b.json["id"], id.as_str());
    a.assert_error(409, "authorization_superseded");
    app.sim
        .control()
        .set_faults(&SimFaults::default())
        .await
        .expect("faults");
    assert_refreshes(&app, &id, &user).await;
}

async fn deleting_a_connection_revokes_the_stored_grant_once(backend: Backend) {
    let Some(app) = app_with_zoom_app(backend).await else {
        return;
    };
    let (_, id) = connected_user(&app).await;
    let a = app.connection_call(Method::DELETE, &id, "").await;
    assert_eq!(a.status, 200, "{}", a.text);
    let s = app.sim_stats().await;
    assert_eq!(s.revocations, 1);
    assert_eq!(s.stale_refresh_token_uses, 0);
    assert_eq!(app.connection_call(Method::GET, &id, "").await.status, 404);
}

/// DESIGN.md §6: a process that dies mid-refresh leaves its lease behind. A request
/// for that connection answers within `LEASE_WAIT` (5 s): 503 `busy` with
/// `Retry-After` while the lease stands, the token once it has lapsed.
async fn a_lease_left_by_a_dead_process_delays_a_token_by_seconds(backend: Backend) {
    let Some(app) = app_with_zoom_app(backend).await else {
        return;
    };
    short_tokens(&app).await;
    let (user, id) = connected_user(&app).await;
    // A dead process's claim, as `serve` would have made it (15 s by default).
    let claimed = app
        .keeper
        .store
        .claim_connection_lease(&id, "dead-process", std::time::Duration::from_secs(15))
        .await
        .expect("claim")
        .expect("free");
    let started = std::time::Instant::now();
    let a = app.access_token(&id).await;
    let waited = started.elapsed();
    a.assert_error(503, "busy");
    assert!(a.headers.get("retry-after").is_some(), "{:?}", a.headers);
    // Well under the old 60 s lease; bounded by LEASE_WAIT plus scheduling.
    assert!(waited < std::time::Duration::from_secs(12), "{waited:?}");
    assert_eq!(app.sim_stats().await.refresh_grants, 0);

    // A lease that lapses while the request waits: the request refreshes itself.
    app.keeper
        .store
        .release_connection_lease(&id, claimed.fence, None)
        .await
        .expect("release");
    app.keeper
        .store
        .claim_connection_lease(&id, "dead-process", std::time::Duration::from_secs(2))
        .await
        .expect("claim")
        .expect("free");
    assert_refreshes(&app, &id, &user).await;
}

/// When Zoom's access tokens live less than the 120 s a handed-out token should
/// have left, requests that waited for a refresh take the token it produced
/// instead of each refreshing again.
async fn concurrent_requests_share_a_refresh_of_short_lived_tokens(backend: Backend) {
    let Some(app) = app_with_zoom_app(backend).await else {
        return;
    };
    short_tokens(&app).await;
    let (_, id) = connected_user(&app).await;
    app.sim
        .control()
        .set_faults(&SimFaults {
            latency_ms: Some(200),
            paths: Some(vec!["/oauth/token".into()]),
            ..Default::default()
        })
        .await
        .expect("latency");
    let before = app.sim_stats().await;
    let answers = futures::future::join_all((0..5).map(|_| app.access_token(&id))).await;
    let tokens: std::collections::BTreeSet<_> = answers
        .iter()
        .map(|a| {
            assert_eq!(a.status, 200, "{}", a.text);
            a.json["token"].as_str().expect("token").to_owned()
        })
        .collect();
    assert_eq!(tokens.len(), 1, "one refresh, one token");
    let after = app.sim_stats().await;
    assert_eq!(after.refresh_grants, before.refresh_grants + 1, "{after:?}");
}

/// Makes every UPDATE of a connection fail (a trigger) until [`heal_database`].
async fn break_connection_writes(app: &TestApp) {
    let statements: &[&str] = match app.backend {
        Backend::Sqlite => &[
            "CREATE TABLE injected_failures (n INTEGER) STRICT",
            "INSERT INTO injected_failures VALUES (1)",
            "CREATE TRIGGER injected_failure BEFORE UPDATE ON zoom_oauth_connections \
             WHEN EXISTS (SELECT 1 FROM injected_failures) \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
        ],
        Backend::Postgres => &[
            "CREATE TABLE injected_failures (n int)",
            "INSERT INTO injected_failures VALUES (1)",
            "CREATE FUNCTION injected_failure() RETURNS trigger AS $$ BEGIN \
             IF EXISTS (SELECT 1 FROM injected_failures) THEN \
             RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER injected_failure BEFORE UPDATE ON zoom_oauth_connections \
             FOR EACH ROW EXECUTE FUNCTION injected_failure()",
        ],
    };
    app.execute_sql(statements).await;
}

async fn heal_database(app: &TestApp) {
    app.execute_sql(&["DELETE FROM injected_failures"]).await;
}

/// The exchange succeeded, then the database refused the write for a while: the
/// new grant (the only one Zoom still honours) is written once the database is back.
async fn a_reauthorisation_survives_the_database_failing_for_a_while(backend: Backend) {
    let Some(app) = app_with_zoom_app(backend).await else {
        return;
    };
    let (user, id) = connected_user(&app).await;
    short_tokens(&app).await;
    break_connection_writes(&app).await;
    let heal = async {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        heal_database(&app).await;
    };
    let (a, ()) = tokio::join!(app.connect_user(CLIENT, &user, json!({})), heal);
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.json["id"], id.as_str());
    assert!(
        testkit::captured_logs().contains("storing a new grant failed; trying again"),
        "the write did fail at first"
    );
    assert_refreshes(&app, &id, &user).await;
}
