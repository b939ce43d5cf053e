//! The meeting sync story (DESIGN.md §6, issue 5), on SQLite and PostgreSQL against
//! the Zoom simulator: meetings made before a user connects are found, the PMI is
//! indexed, rate limits and outages are waited out, a revoked grant disconnects.

use futures::StreamExt as _;
use keeper::meeting_sync::{self, Round};
use keeper::storage::{MeetingFilter, MeetingIndexChange, MeetingRow, MeetingSource, PageRequest};
use reqwest::Method;
use serde_json::{json, Value};
use testkit::{on_both_databases, spawn_app, Backend, TestApp};
use zoom_sim::{SimFaults, SimMeeting, SimRetryAfter, SimUser};

on_both_databases!(
    meetings_made_before_connecting_are_found_over_several_pages,
    a_resync_replaces_sync_rows_and_keeps_webhook_rows,
    sync_completes_under_zoom_rate_limits,
    an_outage_records_the_attempt_and_a_later_sync_succeeds,
    a_revoked_grant_disconnects_during_sync,
    connections_without_local_recording_are_not_synced,
    a_pmi_row_and_another_hosts_webhook_row_are_not_taken,
    a_daily_limit_reschedules_the_sync_to_zooms_iso_8601_retry_after,
    a_daily_limit_without_retry_after_backs_off_and_recovers,
    an_expired_page_token_restarts_the_list_instead_of_failing_the_sync,
);

const CLIENT: &str = "sync-client";

async fn app(backend: Backend) -> Option<TestApp> {
    let app = spawn_app(backend).await?;
    app.new_app(CLIENT).await;
    Some(app)
}

/// A simulated Zoom user: (id, pmi).
async fn zoom_user(app: &TestApp) -> (String, u64) {
    let u = app
        .sim
        .control()
        .create_user(&SimUser::default())
        .await
        .expect("sim user");
    (u.id, u.pmi)
}

/// Creates `n` meetings for `user` at the simulator; returns their ids.
async fn meetings(app: &TestApp, user: &str, n: usize) -> Vec<u64> {
    let control = app.sim.control();
    futures::stream::iter(0..n)
        .map(|i| {
            let control = control.clone();
            async move {
                control
                    .create_meeting(
                        user,
                        &SimMeeting {
                            topic: Some(format!("Meeting {i}")),
                            ..Default::default()
                        },
                    )
                    .await
                    .expect("sim meeting")
                    .id
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// Connects `user`; returns the connection's JSON.
async fn connect(app: &TestApp, user: &str, extra: Value) -> Value {
    let a = app.connect_user(CLIENT, user, extra).await;
    assert_eq!(a.status, 201, "{}", a.text);
    a.json
}

async fn round(app: &TestApp) -> Round {
    let (_stop, stopping) = tokio::sync::watch::channel(false);
    meeting_sync::run_once(&app.keeper, &stopping)
        .await
        .expect("sync round")
}

/// The whole index of one connection.
pub(crate) async fn index_of(app: &TestApp, connection_id: &str) -> Vec<MeetingRow> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = app
            .keeper
            .store
            .list_meetings(
                &app.project_id,
                &MeetingFilter {
                    meeting_id: None,
                    connection_id: Some(connection_id.to_owned()),
                    ..MeetingFilter::default()
                },
                &PageRequest {
                    cursor: cursor.clone(),
                    limit: 100,
                },
            )
            .await
            .expect("list meetings");
        let last = page.items.last().cloned();
        all.extend(page.items);
        match (page.has_more, last) {
            (true, Some(last)) => {
                cursor = Some(keeper::storage::Cursor {
                    created_at: last.synced_at,
                    id: keeper::storage::meeting_cursor_id(&last.app_id, &last.meeting_id),
                    direction: keeper::storage::Direction::Older,
                })
            }
            _ => return all,
        }
    }
}

async fn host_of(app: &TestApp, meeting_id: &str) -> Option<MeetingRow> {
    app.keeper
        .store
        .meeting_hosts(&app.project_id, None, meeting_id)
        .await
        .expect("meeting hosts")
        .into_iter()
        .next()
}

async fn events(app: &TestApp, id: &str) -> Vec<Value> {
    let a = app.connection_call(Method::GET, id, "/events").await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.json["results"].as_array().expect("results").clone()
}

async fn meetings_made_before_connecting_are_found_over_several_pages(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (user, pmi) = zoom_user(&app).await;
    let (other, _) = zoom_user(&app).await;
    let made = meetings(&app, &user, 1_001).await;
    let not_ours = meetings(&app, &other, 3).await;
    let conn = connect(&app, &user, json!({})).await;
    let id = conn["id"].as_str().expect("id");
    assert!(conn["last_successful_sync_at"].is_null());

    let r = round(&app).await;
    assert_eq!((r.claimed, r.synced), (1, 1), "{r:?}");

    let index = index_of(&app, id).await;
    let synced: std::collections::HashSet<String> = index
        .iter()
        .filter(|m| m.source == MeetingSource::Sync)
        .map(|m| m.meeting_id.clone())
        .collect();
    assert_eq!(synced.len(), 1_001);
    for m in &made {
        assert!(synced.contains(&m.to_string()), "meeting {m} not indexed");
    }
    for m in &not_ours {
        assert!(host_of(&app, &m.to_string()).await.is_none());
    }
    let pmi_row = host_of(&app, &pmi.to_string()).await.expect("PMI indexed");
    assert_eq!(pmi_row.source, MeetingSource::Pmi);
    assert_eq!(pmi_row.connection_id, id);
    // Upcoming and scheduled list the same meetings: one row each, 1,001 + PMI.
    assert_eq!(index.len(), 1_002);

    let conn = app.connection(id).await;
    assert_eq!(conn["pmi"], pmi.to_string());
    assert!(conn["last_successful_sync_at"].is_string(), "{conn}");
    assert_eq!(
        conn["last_successful_sync_at"],
        conn["last_attempted_sync_at"]
    );
    let done = events(&app, id).await;
    let sync_event = done
        .iter()
        .find(|e| e["kind"] == "sync_completed")
        .expect("sync_completed event");
    assert!(
        sync_event["message"]
            .as_str()
            .is_some_and(|m| m.contains("1001 meetings")),
        "{sync_event}"
    );
    // The next sync is a day away.
    assert_eq!(round(&app).await.claimed, 0);
    let stats = app.sim.control().stats().await.expect("stats");
    let pages = stats
        .api_calls_by_endpoint
        .iter()
        .filter(|(k, _)| k.contains("/meetings") && k.starts_with("GET /v2/users"))
        .map(|(_, v)| *v)
        .sum::<u64>();
    assert_eq!(pages, 8, "4 pages of upcoming, 4 of scheduled");
}

async fn a_resync_replaces_sync_rows_and_keeps_webhook_rows(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (user, _) = zoom_user(&app).await;
    let first = meetings(&app, &user, 5).await;
    let conn = connect(&app, &user, json!({})).await;
    let id = conn["id"].as_str().expect("id").to_owned();
    assert_eq!(round(&app).await.synced, 1);

    // A meeting arrives by webhook (not yet listed at Zoom); two are deleted at Zoom
    // without a webhook; two new ones are made.
    let app_id = conn["zoom_oauth_app_id"]
        .as_str()
        .expect("app id")
        .to_owned();
    app.keeper
        .store
        .apply_meeting_change(&MeetingIndexChange::Upsert(MeetingRow {
            project_id: app.project_id.clone(),
            app_id,
            meeting_id: "98765432101".into(),
            connection_id: id.clone(),
            source: MeetingSource::Webhook,
            topic: Some("from a webhook".into()),
            start_time: None,
            synced_at: chrono::Utc::now(),
            host_user_id: None,
        }))
        .await
        .expect("webhook row");
    for gone in &first[..2] {
        app.sim
            .control()
            .delete_meeting(*gone)
            .await
            .expect("delete");
    }
    let added = meetings(&app, &user, 2).await;

    let a = app.connection_call(Method::POST, &id, "/sync").await;
    assert_eq!(a.status, 202, "{}", a.text);
    assert_eq!(round(&app).await.synced, 1);

    for gone in &first[..2] {
        assert!(host_of(&app, &gone.to_string()).await.is_none(), "{gone}");
    }
    for kept in first[2..].iter().chain(&added) {
        let row = host_of(&app, &kept.to_string()).await.expect("indexed");
        assert_eq!(
            (row.source, row.connection_id.as_str()),
            (MeetingSource::Sync, id.as_str())
        );
    }
    let webhook = host_of(&app, "98765432101")
        .await
        .expect("webhook row kept");
    assert_eq!(webhook.source, MeetingSource::Webhook);
    let synced = events(&app, &id)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "sync_completed")
        .count();
    assert_eq!(synced, 2);
}

async fn sync_completes_under_zoom_rate_limits(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (user, pmi) = zoom_user(&app).await;
    meetings(&app, &user, 1_001).await;
    let conn = connect(&app, &user, json!({})).await;
    let id = conn["id"].as_str().expect("id");
    // 4 pages per list + /users/me = 9 calls against 2 a second.
    app.sim
        .control()
        .set_faults(&SimFaults {
            rate_limit_per_s: Some(2),
            ..Default::default()
        })
        .await
        .expect("faults");
    let r = round(&app).await;
    assert_eq!(r.synced, 1, "{r:?}");
    let stats = app.sim.control().stats().await.expect("stats");
    assert!(stats.rate_limited > 0, "the limit was hit: {stats:?}");
    let index = index_of(&app, id).await;
    assert_eq!(index.len(), 1_002);
    assert!(host_of(&app, &pmi.to_string()).await.is_some());

    // A Retry-After given as an HTTP date (Zoom's daily limit) is honoured too.
    app.sim
        .control()
        .set_faults(&SimFaults {
            rate_limit_per_s: Some(2),
            retry_after_http_date: Some(true),
            ..Default::default()
        })
        .await
        .expect("faults");
    let a = app.connection_call(Method::POST, id, "/sync").await;
    assert_eq!(a.status, 202);
    assert_eq!(round(&app).await.synced, 1);
    assert_eq!(index_of(&app, id).await.len(), 1_002);
}

async fn an_outage_records_the_attempt_and_a_later_sync_succeeds(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (user, _) = zoom_user(&app).await;
    let made = meetings(&app, &user, 3).await;
    let conn = connect(&app, &user, json!({})).await;
    let id = conn["id"].as_str().expect("id");
    app.sim
        .control()
        .set_faults(&SimFaults {
            status_code: Some(503),
            paths: Some(vec!["/v2/".into()]),
            ..Default::default()
        })
        .await
        .expect("faults");
    let r = round(&app).await;
    assert_eq!((r.claimed, r.failed), (1, 1), "{r:?}");
    let conn = app.connection(id).await;
    assert_eq!(conn["state"], "connected", "an outage never disconnects");
    assert!(conn["last_attempted_sync_at"].is_string(), "{conn}");
    assert!(conn["last_successful_sync_at"].is_null(), "{conn}");
    assert!(index_of(&app, id).await.is_empty());
    assert_eq!(round(&app).await.claimed, 0, "the retry waits");

    app.sim
        .control()
        .set_faults(&SimFaults::default())
        .await
        .expect("faults");
    let a = app.connection_call(Method::POST, id, "/sync").await;
    assert_eq!(a.status, 202);
    assert_eq!(round(&app).await.synced, 1);
    for m in made {
        assert!(host_of(&app, &m.to_string()).await.is_some());
    }
    assert!(app.connection(id).await["last_successful_sync_at"].is_string());
}

async fn a_revoked_grant_disconnects_during_sync(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (user, _) = zoom_user(&app).await;
    let conn = connect(&app, &user, json!({})).await;
    let id = conn["id"].as_str().expect("id");
    app.sim
        .control()
        .deauthorize(&user, CLIENT)
        .await
        .expect("deauthorize");
    let r = round(&app).await;
    assert_eq!((r.claimed, r.disconnected), (1, 1), "{r:?}");
    let conn = app.connection(id).await;
    assert_eq!(conn["state"], "disconnected");
    assert!(
        conn["connection_failure_data"]["code"].is_string(),
        "{conn}"
    );
    assert_eq!(
        round(&app).await.claimed,
        0,
        "disconnected ones are not synced"
    );
    let outbox = app
        .keeper
        .store
        .list_outbox_events(&app.project_id, 10)
        .await
        .expect("outbox");
    assert_eq!(outbox.len(), 1, "one state_change");
}

async fn connections_without_local_recording_are_not_synced(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (user, _) = zoom_user(&app).await;
    meetings(&app, &user, 2).await;
    // The user granted the scopes of both capabilities; only onbehalf is asked for.
    let scopes = testkit::scopes_asked_for(&json!({"is_onbehalf_token_supported": true}));
    let code = app.auth_code(CLIENT, &user, Some(scopes)).await;
    let conn = app
        .create_connection(json!({
            "authorization_code": code,
            "redirect_uri": testkit::REDIRECT_URI,
            "is_local_recording_token_supported": false,
            "is_onbehalf_token_supported": true,
        }))
        .await;
    assert_eq!(conn.status, 201, "{}", conn.text);
    let conn = conn.json;
    let id = conn["id"].as_str().expect("id");
    assert_eq!(round(&app).await.claimed, 0);
    assert!(index_of(&app, id).await.is_empty());
    // Turned on later: the next round syncs it.
    let a = app
        .send(
            app.request(
                Method::PATCH,
                &format!("/api/v1/zoom_oauth_connections/{id}"),
            )
            .json(&json!({"is_local_recording_token_supported": true})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(round(&app).await.synced, 1);
    assert_eq!(index_of(&app, id).await.len(), 3, "2 meetings and the PMI");
}

async fn a_pmi_row_and_another_hosts_webhook_row_are_not_taken(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (alice, _) = zoom_user(&app).await;
    let (bob, _) = zoom_user(&app).await;
    let alices = meetings(&app, &alice, 2).await;
    let b = connect(&app, &bob, json!({})).await;
    let b_id = b["id"].as_str().expect("id");
    assert_eq!(round(&app).await.synced, 1);
    let app_id = b["zoom_oauth_app_id"].as_str().expect("app").to_owned();
    // Bob holds one of Alice's meetings as a PMI row (a meeting scheduled with a
    // PMI carries it as its id) and the other by a webhook row.
    let row = |meeting: u64, source| MeetingRow {
        project_id: app.project_id.clone(),
        app_id: app_id.clone(),
        meeting_id: meeting.to_string(),
        connection_id: b_id.to_owned(),
        source,
        topic: None,
        start_time: None,
        synced_at: chrono::Utc::now(),
        host_user_id: None,
    };
    for (meeting, source) in [
        (alices[0], MeetingSource::Pmi),
        (alices[1], MeetingSource::Webhook),
    ] {
        app.keeper
            .store
            .apply_meeting_change(&MeetingIndexChange::Upsert(row(meeting, source)))
            .await
            .expect("row");
    }
    let a = connect(&app, &alice, json!({})).await;
    let a_id = a["id"].as_str().expect("id");
    let r = round(&app).await;
    assert_eq!((r.claimed, r.synced), (1, 1), "only Alice is due: {r:?}");
    // Zoom names Alice as the host: the webhook row is hers now; a PMI row is
    // never taken.
    let second = host_of(&app, &alices[1].to_string()).await.expect("row");
    assert_eq!(
        (second.connection_id.as_str(), second.source),
        (a_id, MeetingSource::Sync)
    );
    let first = host_of(&app, &alices[0].to_string()).await.expect("row");
    assert_eq!(
        (first.connection_id.as_str(), first.source),
        (b_id, MeetingSource::Pmi)
    );
}

async fn next_sync_at(app: &TestApp, id: &str) -> chrono::DateTime<chrono::Utc> {
    app.keeper
        .store
        .connection_by_id(id)
        .await
        .expect("read")
        .expect("connection")
        .next_sync_at
        .expect("next_sync_at")
}

/// Zoom's daily limit answers `Retry-After: 2020-05-31T00:00:00Z`, the next 00:00 GMT
/// (developers.zoom.us/docs/api/rate-limits). The sync waits until then instead of
/// spending requests against a spent daily budget a second later.
async fn a_daily_limit_reschedules_the_sync_to_zooms_iso_8601_retry_after(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (user, _) = zoom_user(&app).await;
    let conn = connect(&app, &user, json!({})).await;
    let id = conn["id"].as_str().expect("id");
    // Zoom's daily budget resets at the next 00:00 GMT; not within seconds of it.
    let midnight = |now: chrono::DateTime<chrono::Utc>| {
        (now.date_naive() + chrono::Duration::days(1))
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
    };
    if midnight(chrono::Utc::now()) - chrono::Utc::now() < chrono::Duration::seconds(10) {
        tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    }
    let reset = midnight(chrono::Utc::now());
    app.sim
        .control()
        .set_faults(&SimFaults {
            daily_limit: Some(0),
            ..Default::default()
        })
        .await
        .expect("faults");
    let r = round(&app).await;
    assert_eq!((r.claimed, r.failed), (1, 1), "{r:?}");
    let next = next_sync_at(&app, id).await;
    assert!(
        next >= reset - chrono::Duration::seconds(1),
        "the sync waits for Zoom's reset at {reset}, not only until {next}"
    );
    assert_eq!(round(&app).await.claimed, 0);
}

/// A daily-limit 429 with no `Retry-After` at all (devforum.zoom.us/t/18928): the
/// sync backs off with jitter and succeeds once Zoom answers again.
async fn a_daily_limit_without_retry_after_backs_off_and_recovers(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (user, _) = zoom_user(&app).await;
    meetings(&app, &user, 2).await;
    let conn = connect(&app, &user, json!({})).await;
    let id = conn["id"].as_str().expect("id");
    let control = app.sim.control();
    control
        .set_faults(&SimFaults {
            daily_limit: Some(0),
            retry_after: Some(SimRetryAfter::None),
            ..Default::default()
        })
        .await
        .expect("faults");
    let before = chrono::Utc::now();
    let r = round(&app).await;
    assert_eq!(r.failed, 1, "{r:?}");
    let next = next_sync_at(&app, id).await;
    assert!(
        next > before && next <= chrono::Utc::now() + chrono::Duration::minutes(6),
        "a backoff, not a day: {next}"
    );
    control
        .set_faults(&SimFaults::default())
        .await
        .expect("faults");
    let a = app.connection_call(Method::POST, id, "/sync").await;
    assert_eq!(a.status, 202, "{}", a.text);
    assert_eq!(round(&app).await.synced, 1);
    assert_eq!(index_of(&app, id).await.len(), 3);
}

/// Zoom's `next_page_token` expires after 15 minutes (Zoom's Meeting API, List
/// meetings) and is then answered 400, code 300: the sync reads the list again from
/// its first page and completes, instead of failing for an hour.
async fn an_expired_page_token_restarts_the_list_instead_of_failing_the_sync(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (user, _) = zoom_user(&app).await;
    meetings(&app, &user, 301).await;
    let conn = connect(&app, &user, json!({})).await;
    let id = conn["id"].as_str().expect("id");
    app.sim
        .control()
        .set_faults(&SimFaults {
            expire_next_page_tokens: Some(1),
            ..Default::default()
        })
        .await
        .expect("faults");
    let r = round(&app).await;
    assert_eq!((r.synced, r.failed), (1, 0), "{r:?}");
    assert_eq!(index_of(&app, id).await.len(), 302);
    let kinds: Vec<Value> = events(&app, id)
        .await
        .iter()
        .map(|e| e["kind"].clone())
        .collect();
    assert!(!kinds.contains(&json!("sync_failed")), "{kinds:?}");
    // Upcoming: 2 pages + the refused token + its first page again; scheduled: 2.
    let stats = app.sim.control().stats().await.expect("stats");
    let pages = stats
        .api_calls_by_endpoint
        .iter()
        .filter(|(k, _)| k.contains("/meetings") && k.starts_with("GET /v2/users"))
        .map(|(_, v)| *v)
        .sum::<u64>();
    assert_eq!(pages, 6);
}
