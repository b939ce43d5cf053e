//! Account-level apps (DESIGN.md §15), on SQLite and PostgreSQL against the
//! simulator: who may authorise one, and with which scopes; what a bot gets for a
//! meeting of a user of the account who never connected.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use keeper::config::Settings;
use keeper::meeting_sync::{self, Round};
use reqwest::Method;
use serde_json::{json, Value};
use testkit::{on_both_databases, spawn_app_with, Answer, Backend, TestApp, REDIRECT_URI};
use zoom_sim::{
    SimAccount, SimAccountCreated, SimApp, SimAppKind, SimAppPatch, SimFaults, SimMeeting, SimUser,
    SimUserRole,
};

use super::meeting_sync::index_of;

on_both_databases!(
    a_member_cannot_authorise_an_account_level_app,
    an_account_grant_needs_the_admin_scopes,
    an_admin_with_the_admin_scopes_connects_the_account,
    a_bot_gets_every_token_for_a_members_meeting_from_the_admins_grant,
    the_account_sync_indexes_every_users_meetings_under_zoom_rate_limits,
    the_account_sync_resumes_after_a_long_rate_limit_and_after_a_crash,
    a_users_own_connection_keeps_their_meetings,
);

const CLIENT: &str = "account-client";
const WEBHOOK_SECRET: &str = "whsec-of-account-client";

/// A service with one account-level app; returns it and the app's id.
async fn started(backend: Backend) -> Option<(TestApp, String)> {
    started_with(backend, Settings::default()).await
}

async fn started_with(backend: Backend, settings: Settings) -> Option<(TestApp, String)> {
    let app = spawn_app_with(backend, settings).await?;
    let secret = format!("secret-of-{CLIENT}");
    app.sim
        .control()
        .create_app(&SimApp {
            client_id: CLIENT.into(),
            client_secret: secret.clone(),
            kind: Some(SimAppKind::AccountLevel),
            ..Default::default()
        })
        .await
        .expect("sim app");
    let a = app
        .create_app(json!({"client_id": CLIENT, "client_secret": secret,
            "webhook_secret": WEBHOOK_SECRET, "kind": "account_level"}))
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let id = a.json["id"].as_str().expect("id").to_owned();
    // Zoom's events for the app reach the service.
    app.sim
        .control()
        .update_app(
            CLIENT,
            &SimAppPatch {
                webhook_url: Some(a.json["webhook_url"].as_str().expect("url").to_owned()),
                webhook_secret: Some(WEBHOOK_SECRET.into()),
                ..Default::default()
            },
        )
        .await
        .expect("point the sim app's webhooks at the service");
    Some((app, id))
}

fn scopes(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

async fn authorise(app: &TestApp, user: &str, granted: Vec<String>) -> Answer {
    let code = app.auth_code(CLIENT, user, Some(granted)).await;
    app.create_connection(json!({"authorization_code": code, "redirect_uri": REDIRECT_URI}))
        .await
}

/// A user of `role` in a new account with an owner; returns the user's id.
async fn user_in_account(app: &TestApp, role: SimUserRole) -> String {
    let owner = app.zoom_user(None).await;
    let account = app
        .sim
        .control()
        .users()
        .await
        .expect("users")
        .into_iter()
        .find(|u| u.id == owner)
        .expect("owner")
        .account_id;
    app.sim
        .control()
        .create_user(&SimUser {
            account_id: Some(account),
            role: Some(role),
            ..Default::default()
        })
        .await
        .expect("user")
        .id
}

async fn connections(app: &TestApp) -> Vec<Value> {
    let a = app
        .send(app.request(Method::GET, "/api/v1/zoom_oauth_connections"))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.json["results"].as_array().expect("results").clone()
}

async fn a_member_cannot_authorise_an_account_level_app(backend: Backend) {
    let Some((app, _)) = started(backend).await else {
        return;
    };
    let member = user_in_account(&app, SimUserRole::Member).await;
    let a = authorise(&app, &member, scopes(zoom_sim::ACCOUNT_LEVEL_SCOPES)).await;
    a.assert_error(400, "not_account_admin");
    assert!(
        a.json["error"].as_str().expect("error").contains("admin"),
        "{}",
        a.text
    );
    assert!(connections(&app).await.is_empty(), "nothing stored");
    // Through /api/v2 the same answer, in Recall's shape.
    let uuid = app
        .send(app.request(Method::GET, "/api/v2/zoom-oauth-apps/"))
        .await
        .json["results"][0]["id"]
        .as_str()
        .expect("uuid")
        .to_owned();
    let code = app
        .auth_code(
            CLIENT,
            &member,
            Some(scopes(zoom_sim::ACCOUNT_LEVEL_SCOPES)),
        )
        .await;
    let v2 = app
        .send(
            app.request(Method::POST, "/api/v2/zoom-oauth-credentials/")
                .json(&json!({"oauth_app": uuid,
                    "authorization_code": {"code": code, "redirect_uri": REDIRECT_URI}})),
        )
        .await;
    assert_eq!(v2.status, 400, "{}", v2.text);
    assert_eq!(v2.json["code"], "not_account_admin");
    assert!(v2.json["detail"]
        .as_str()
        .is_some_and(|d| d.contains("admin")));
    assert!(connections(&app).await.is_empty());
}

async fn an_account_grant_needs_the_admin_scopes(backend: Backend) {
    let Some((app, _)) = started(backend).await else {
        return;
    };
    let admin = user_in_account(&app, SimUserRole::Admin).await;
    let user_level = testkit::scopes_asked_for(&json!({"is_onbehalf_token_supported": true}));
    let a = authorise(&app, &admin, user_level).await;
    a.assert_error(400, "missing_scopes");
    let message = a.json["error"].as_str().expect("error");
    for scope in [
        "user:read:list_users:admin",
        "meeting:read:list_meetings:admin",
        "meeting:read:local_recording_token:admin",
    ] {
        assert!(message.contains(scope), "{scope} in {message}");
    }
    assert!(connections(&app).await.is_empty());
}

async fn an_admin_with_the_admin_scopes_connects_the_account(backend: Backend) {
    let Some((app, zoa)) = started(backend).await else {
        return;
    };
    // Granular admin scopes, and the classic admin names.
    let granular = user_in_account(&app, SimUserRole::Admin).await;
    let a = authorise(&app, &granular, scopes(zoom_sim::ACCOUNT_LEVEL_SCOPES)).await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.json["zoom_oauth_app_id"], zoa.as_str());
    assert_eq!(a.json["is_local_recording_token_supported"], true);
    let classic = user_in_account(&app, SimUserRole::Owner).await;
    let b = authorise(
        &app,
        &classic,
        scopes(&[
            "user:read:admin",
            "meeting:read:admin",
            "meeting_token:read:admin:local_recording",
        ]),
    )
    .await;
    assert_eq!(b.status, 201, "{}", b.text);
    assert_eq!(connections(&app).await.len(), 2);
}

async fn a_bot_gets_every_token_for_a_members_meeting_from_the_admins_grant(backend: Backend) {
    let Some((app, _)) = started(backend).await else {
        return;
    };
    let sim = app.sim.control();
    let account = sim
        .create_account(&zoom_sim::SimAccount {
            members: 2,
            meetings_per_user: 0,
            ..Default::default()
        })
        .await
        .expect("account");
    let (admin, member) = (account.admin_id.clone(), account.user_ids[0].clone());
    let code = app
        .auth_code(CLIENT, &admin, Some(scopes(zoom_sim::ACCOUNT_LEVEL_SCOPES)))
        .await;
    let c = app
        .create_connection(
            json!({"authorization_code": code, "redirect_uri": REDIRECT_URI,
            "is_onbehalf_token_supported": true}),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text);
    let account_connection = c.json["id"].as_str().expect("id").to_owned();

    // The member (never connected) schedules a meeting; Zoom's webhook indexes it to
    // the account connection.
    let meeting = sim
        .create_meeting(&member, &SimMeeting::default())
        .await
        .expect("meeting");
    let mut indexed = Value::Null;
    for _ in 0..200 {
        let a = app
            .send(app.request(
                Method::GET,
                &format!("/api/v1/zoom_meetings?meeting_id={}", meeting.id),
            ))
            .await;
        if let Some(row) = a.json["results"].as_array().and_then(|r| r.first()) {
            indexed = row.clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(
        indexed["zoom_oauth_connection_id"],
        account_connection.as_str()
    );

    // The bot asks for all three tokens as that member.
    let a = app
        .send(
            app.request(Method::POST, "/api/v1/zoom_join_tokens")
                .json(&json!({
                    "meeting_url": meeting.join_url,
                    "onbehalf_token": {"zoom_oauth_connection_user_id": member},
                    "zak_token": {"zoom_oauth_connection_user_id": member},
                })),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["problems"], json!([]), "{}", a.text);
    let info = |field: &str| {
        let token = a.json[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field}: {}", a.text))
            .to_owned();
        let sim = app.sim.control();
        async move {
            sim.token_info(&token)
                .await
                .expect("lookup")
                .expect("a sim token")
        }
    };
    let recording = info("app_privilege_token").await;
    assert_eq!(recording.token_type, "local_recording");
    assert_eq!(recording.meeting_id, Some(meeting.id));
    let onbehalf = info("onbehalf_token").await;
    assert_eq!(onbehalf.token_type, "onbehalf");
    assert_eq!(onbehalf.user_id.as_deref(), Some(member.as_str()));
    assert_eq!(onbehalf.minted_by.as_deref(), Some(admin.as_str()));
    let zak = info("zak_token").await;
    assert_eq!(zak.token_type, "zak");
    assert_eq!(zak.user_id.as_deref(), Some(member.as_str()));

    // Recall's bot asks for an onbehalf token naming nobody: it is the meeting's
    // host's (the member's), minted with the admin's grant.
    let platform = app
        .send(
            app.request(Method::POST, "/api/v1/bot_platforms")
                .json(&json!({"platform": "recall"})),
        )
        .await;
    assert_eq!(platform.status, 201, "{}", platform.text);
    let obf_url = platform.json["urls"]["obf_token_url"]
        .as_str()
        .expect("obf url")
        .to_owned();
    let obf = app
        .send(app.http.get(format!("{obf_url}&meeting_id={}", meeting.id)))
        .await;
    assert_eq!(obf.status, 200, "{}", obf.text);
    let who = sim
        .token_info(obf.text.trim())
        .await
        .expect("lookup")
        .expect("a sim token");
    assert_eq!(who.token_type, "onbehalf");
    assert_eq!(who.user_id.as_deref(), Some(member.as_str()));
    assert_eq!(who.minted_by.as_deref(), Some(admin.as_str()));

    // A user of another account: no token, and the problem says why.
    let stranger = app.zoom_user(None).await;
    let b = app
        .send(
            app.request(Method::POST, "/api/v1/zoom_join_tokens")
                .json(&json!({
                    "meeting_url": meeting.join_url,
                    "zak_token": {"zoom_oauth_connection_user_id": stranger},
                })),
        )
        .await;
    assert_eq!(b.status, 200, "{}", b.text);
    assert_eq!(b.json["zak_token"], Value::Null);
    let problem = b.json["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .find(|p| p["token"] == "zak_token")
        .expect("a zak problem")
        .clone();
    assert_eq!(problem["code"], "no_connection");
    assert!(
        problem["message"]
            .as_str()
            .is_some_and(|m| m.contains("account")),
        "{problem}"
    );
}

/// A simulated account of an admin and `members` members with `meetings` meetings
/// each (no webhooks: only the meeting sync can find them), and the admin's
/// connection; returns the account and the connection's id.
async fn account_connected(
    app: &TestApp,
    members: u32,
    meetings: u32,
) -> (SimAccountCreated, String) {
    let account = app
        .sim
        .control()
        .create_account(&SimAccount {
            members,
            meetings_per_user: meetings,
            ..Default::default()
        })
        .await
        .expect("account");
    let code = app
        .auth_code(
            CLIENT,
            &account.admin_id,
            Some(scopes(zoom_sim::ACCOUNT_LEVEL_SCOPES)),
        )
        .await;
    let a = app
        .create_connection(
            json!({"authorization_code": code, "redirect_uri": REDIRECT_URI,
            "is_onbehalf_token_supported": true}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    (account, a.json["id"].as_str().expect("id").to_owned())
}

async fn sync_round(app: &TestApp) -> Round {
    let (_stop, stopping) = tokio::sync::watch::channel(false);
    meeting_sync::run_once(&app.keeper, &stopping)
        .await
        .expect("sync round")
}

/// Every meeting the simulator made for the account's users (PMIs aside), by id,
/// with its host.
fn made(account: &SimAccountCreated) -> BTreeMap<String, String> {
    account
        .meeting_ids
        .iter()
        .flat_map(|(host, ids)| ids.iter().map(move |id| (id.to_string(), host.clone())))
        .collect()
}

/// What the connection's index holds: meeting id → host user id.
async fn indexed(app: &TestApp, connection_id: &str) -> BTreeMap<String, String> {
    index_of(app, connection_id)
        .await
        .into_iter()
        .map(|m| (m.meeting_id, m.host_user_id.unwrap_or_default()))
        .collect()
}

async fn calls_to(app: &TestApp, endpoint: &str) -> u64 {
    let stats = app.sim.control().stats().await.expect("stats");
    stats
        .api_calls_by_endpoint
        .get(endpoint)
        .copied()
        .unwrap_or_else(|| panic!("no {endpoint} in {:?}", stats.api_calls_by_endpoint))
}

const LIST_USERS: &str = "GET /v2/users";
const LIST_MEETINGS: &str = "GET /v2/users/{user_id}/meetings";

async fn the_account_sync_indexes_every_users_meetings_under_zoom_rate_limits(backend: Backend) {
    // The service allows itself more than Zoom does (Business accounts: Medium APIs
    // 60/s), so Zoom's 429s are met and waited out too.
    let settings = Settings {
        zoom_account_requests_per_second: Some(90),
        ..Settings::default()
    };
    let Some((app, _)) = started_with(backend, settings).await else {
        return;
    };
    app.sim
        .control()
        .set_faults(&SimFaults::zoom_business())
        .await
        .expect("faults");
    // 1 admin + 320 members: two pages of users (Zoom lists 300 a page).
    let (account, connection) = account_connected(&app, 320, 2).await;
    let expected = made(&account);
    assert_eq!(expected.len(), 321 * 2);

    let round = sync_round(&app).await;
    assert_eq!(round.synced, 1, "{round:?}");
    let index = indexed(&app, &connection).await;
    for (meeting, host) in &expected {
        assert_eq!(index.get(meeting), Some(host), "meeting {meeting}");
    }
    // And every member's personal meeting room, hosted by the member.
    let users = app.sim.control().users().await.expect("users");
    for member in &account.user_ids {
        let pmi = users
            .iter()
            .find(|u| &u.id == member)
            .map(|u| u.pmi)
            .expect("a pmi");
        assert_eq!(index.get(&pmi.to_string()), Some(member), "pmi of {member}");
    }
    // Each user's meetings read once (upcoming and scheduled), the users in two
    // pages; Zoom's counts include the calls it refused with a 429.
    let stats = app.sim.control().stats().await.expect("stats");
    assert!(stats.rate_limited > 0, "Zoom's limit was met: {stats:?}");
    let users_lists = calls_to(&app, LIST_USERS).await;
    assert!(
        (2..=2 + stats.rate_limited).contains(&users_lists),
        "{users_lists}"
    );
    let meeting_lists = calls_to(&app, LIST_MEETINGS).await;
    assert!(
        (640..=640 + stats.rate_limited).contains(&meeting_lists),
        "{meeting_lists}"
    );

    // What a person reads: the progress on the connection, and its log.
    let c = app.connection(&connection).await;
    assert_eq!(
        c["account_sync"],
        json!({"in_progress": false, "users_done": 321, "users_total": 321, "started_at": null})
    );
    assert!(c["last_successful_sync_at"].is_string(), "{c}");
    let kinds = app.event_kinds(&connection).await;
    assert_eq!(kinds[0], "sync_completed", "{kinds:?}");
    assert!(kinds.contains(&"sync_started".to_owned()), "{kinds:?}");
    let events = app
        .send(app.request(
            Method::GET,
            &format!("/api/v1/zoom_oauth_connections/{connection}/events"),
        ))
        .await;
    let completed = events.json["results"][0]["message"]
        .as_str()
        .expect("message");
    assert!(
        completed.contains("321 users of the Zoom account read"),
        "{completed}"
    );
    let v2 = app
        .send(app.request(
            Method::GET,
            &format!("/api/v2/zoom-oauth-credentials/{connection}/"),
        ))
        .await;
    assert_eq!(v2.json["meeting_sync_status"], "completed", "{}", v2.text);

    // A bot gets a local recording token for a member's meeting that only the sync
    // found, minted with the admin's grant.
    let member = &account.user_ids[250];
    let meeting = account.meeting_ids[member][0];
    let a = app
        .send(
            app.request(Method::POST, "/api/v1/zoom_join_tokens")
                .json(&json!({
                    "meeting_url": format!("https://zoom.us/j/{meeting}"),
                    "onbehalf_token": {"zoom_oauth_connection_user_id": member},
                    "zak_token": {"zoom_oauth_connection_user_id": member},
                })),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["problems"], json!([]), "{}", a.text);
    let recording = app
        .sim
        .control()
        .token_info(a.json["app_privilege_token"].as_str().expect("token"))
        .await
        .expect("lookup")
        .expect("a sim token");
    assert_eq!(recording.token_type, "local_recording");
    assert_eq!(recording.meeting_id, Some(meeting));
    assert_eq!(
        recording.minted_by.as_deref(),
        Some(account.admin_id.as_str())
    );
    let onbehalf = app
        .sim
        .control()
        .token_info(a.json["onbehalf_token"].as_str().expect("token"))
        .await
        .expect("lookup")
        .expect("a sim token");
    assert_eq!(onbehalf.user_id.as_deref(), Some(member.as_str()));
    let zak = app
        .sim
        .control()
        .token_info(a.json["zak_token"].as_str().expect("zak"))
        .await
        .expect("lookup")
        .expect("a sim token");
    assert_eq!(
        (zak.token_type.as_str(), zak.user_id.as_deref()),
        ("zak", Some(member.as_str()))
    );

    // The next day's pass drops the meetings of a user who left the account.
    let gone = account.user_ids[0].clone();
    app.sim
        .control()
        .update_user(
            &gone,
            &zoom_sim::SimUserPatch {
                status: Some(zoom_sim::SimUserStatus::Inactive),
                ..Default::default()
            },
        )
        .await
        .expect("deactivate");
    app.keeper.clock.advance(Duration::from_secs(26 * 3600));
    let round = sync_round(&app).await;
    assert_eq!(round.synced, 1, "{round:?}");
    let index = indexed(&app, &connection).await;
    assert!(
        index.values().all(|host| host != &gone),
        "the departed user's meetings are gone"
    );
    assert_eq!(
        app.connection(&connection).await["account_sync"]["users_total"],
        320
    );
}

async fn the_account_sync_resumes_after_a_long_rate_limit_and_after_a_crash(backend: Backend) {
    let settings = Settings {
        zoom_account_requests_per_second: Some(200),
        ..Settings::default()
    };
    let Some((app, _)) = started_with(backend, settings).await else {
        return;
    };
    let (account, connection) = account_connected(&app, 40, 1).await;

    // Zoom's daily limit strikes after 30 calls: its Retry-After (tomorrow) is too
    // long to wait, so the pass pauses with what it read.
    app.sim
        .control()
        .set_faults(&SimFaults {
            daily_limit: Some(30),
            ..SimFaults::default()
        })
        .await
        .expect("faults");
    let round = sync_round(&app).await;
    assert_eq!(round.paused, 1, "{round:?}");
    let progress = app.connection(&connection).await["account_sync"].clone();
    assert_eq!(progress["in_progress"], true, "{progress}");
    assert_eq!(progress["users_total"], 41, "{progress}");
    let done_first = progress["users_done"].as_i64().expect("users_done");
    assert!((1..41).contains(&done_first), "{progress}");
    assert_eq!(app.event_kinds(&connection).await[0], "sync_paused");
    assert!(
        indexed(&app, &connection).await.is_empty(),
        "nothing is indexed before the pass is whole"
    );
    let v2 = app
        .send(app.request(
            Method::GET,
            &format!("/api/v2/zoom-oauth-credentials/{connection}/"),
        ))
        .await;
    assert_eq!(v2.json["meeting_sync_status"], "in_progress", "{}", v2.text);

    // A new day at Zoom; the process crashes part-way through the resumed pass
    // (slow answers let it be caught in the middle).
    app.sim
        .control()
        .set_faults(&SimFaults {
            latency_ms: Some(15),
            ..SimFaults::default()
        })
        .await
        .expect("faults");
    app.keeper.clock.advance(Duration::from_secs(24 * 3600));
    let lists_before = calls_to(&app, LIST_MEETINGS).await;
    let keeper = app.keeper.clone();
    let running = tokio::spawn(async move {
        let (_stop, stopping) = tokio::sync::watch::channel(false);
        meeting_sync::run_once(&keeper, &stopping).await
    });
    let mut done_at_crash = done_first;
    for _ in 0..2_000 {
        done_at_crash = app.connection(&connection).await["account_sync"]["users_done"]
            .as_i64()
            .expect("users_done");
        if done_at_crash >= done_first + 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    running.abort();
    let _ = running.await;
    assert!(
        done_at_crash >= done_first + 5 && done_at_crash < 41,
        "{done_at_crash}"
    );

    // Another process takes over once the dead one's claim has expired, and reads
    // only the users nobody read yet (at most the one the crash interrupted again).
    app.sim
        .control()
        .set_faults(&SimFaults::default())
        .await
        .expect("faults");
    assert_eq!(sync_round(&app).await.claimed, 0, "the claim still holds");
    app.keeper
        .clock
        .advance(meeting_sync::CLAIM + Duration::from_secs(1));
    let round = sync_round(&app).await;
    assert_eq!(round.synced, 1, "{round:?}");
    let lists = calls_to(&app, LIST_MEETINGS).await - lists_before;
    // The admin's own lists are "me" calls; each member is two lists.
    let members_left = 40 - (done_first - 1).max(0) as u64;
    assert!(
        lists <= (members_left + 1) * 2,
        "{lists} list calls for {members_left} members left"
    );
    let index = indexed(&app, &connection).await;
    for (meeting, host) in made(&account) {
        assert_eq!(index.get(&meeting), Some(&host), "meeting {meeting}");
    }
    let c = app.connection(&connection).await;
    assert_eq!(c["account_sync"]["in_progress"], false, "{c}");
    assert_eq!(c["account_sync"]["users_done"], 41, "{c}");
}

async fn a_users_own_connection_keeps_their_meetings(backend: Backend) {
    let Some((app, _)) = started_with(backend, Settings::default()).await else {
        return;
    };
    let (account, connection) = account_connected(&app, 3, 2).await;
    // A second admin of the account connects too: their own connection syncs (and
    // mints for) their meetings; the account's connection syncs the rest.
    let sim = app.sim.control();
    let colleague = sim
        .create_user(&SimUser {
            account_id: Some(account.account_id.clone()),
            role: Some(SimUserRole::Admin),
            ..Default::default()
        })
        .await
        .expect("admin")
        .id;
    let theirs: BTreeSet<String> = [
        sim.create_meeting(&colleague, &SimMeeting::default())
            .await
            .expect("meeting")
            .id
            .to_string(),
        sim.create_meeting(&colleague, &SimMeeting::default())
            .await
            .expect("meeting")
            .id
            .to_string(),
    ]
    .into();
    // Zoom's meeting.created for them reaches the service first (before the
    // colleague connects, so the account's connection indexes them): a late one
    // would be a newer event than the syncs below, and the latest event wins.
    for meeting in &theirs {
        let mut seen = false;
        for _ in 0..400 {
            let a = app
                .send(app.request(
                    Method::GET,
                    &format!("/api/v1/zoom_meetings?meeting_id={meeting}"),
                ))
                .await;
            if a.json["results"].as_array().is_some_and(|r| !r.is_empty()) {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(seen, "meeting.created of {meeting} was indexed");
    }
    let own = authorise(&app, &colleague, scopes(zoom_sim::ACCOUNT_LEVEL_SCOPES)).await;
    assert_eq!(own.status, 201, "{}", own.text);
    let own_id = own.json["id"].as_str().expect("id").to_owned();
    // The syncs decide whose the meetings are. (A claim skips a connection whose
    // refresh lease is briefly held.)
    let mut synced = 0;
    for _ in 0..20 {
        synced += sync_round(&app).await.synced;
        if synced == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(synced, 2);
    let account_index = indexed(&app, &connection).await;
    let own_index = indexed(&app, &own_id).await;
    for meeting in &theirs {
        assert_eq!(own_index.get(meeting), Some(&colleague), "{meeting}");
        assert!(!account_index.contains_key(meeting), "{meeting}");
    }
    for (meeting, host) in made(&account) {
        assert_eq!(account_index.get(&meeting), Some(&host), "{meeting}");
    }
    assert!(
        app.connection(&connection).await["account_sync"]["users_total"] == 5,
        "the colleague is a user of the account"
    );
    let message = app
        .send(app.request(
            Method::GET,
            &format!("/api/v1/zoom_oauth_connections/{connection}/events"),
        ))
        .await
        .json["results"][0]["message"]
        .as_str()
        .expect("message")
        .to_owned();
    assert!(
        message.contains("left to their hosts' own connections"),
        "{message}"
    );

    // The colleague's connection goes (deleted): the next account pass takes
    // their meetings, and a bot still gets a token for them.
    let d = app
        .send(app.request(
            Method::DELETE,
            &format!("/api/v1/zoom_oauth_connections/{own_id}"),
        ))
        .await;
    assert!(d.status < 300, "{}", d.text);
    let s = app
        .send(app.request(
            Method::POST,
            &format!("/api/v1/zoom_oauth_connections/{connection}/sync"),
        ))
        .await;
    assert!(s.status < 300, "{}", s.text);
    assert_eq!(sync_round(&app).await.synced, 1);
    let account_index = indexed(&app, &connection).await;
    for meeting in &theirs {
        assert_eq!(account_index.get(meeting), Some(&colleague), "{meeting}");
    }
}
