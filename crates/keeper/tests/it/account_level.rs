//! Account-level apps (DESIGN.md §15), on SQLite and PostgreSQL against the
//! simulator: who may authorise one, and with which scopes; what a bot gets for a
//! meeting of a user of the account who never connected.

use reqwest::Method;
use serde_json::{json, Value};
use testkit::{on_both_databases, spawn_app, Answer, Backend, TestApp, REDIRECT_URI};
use zoom_sim::{SimApp, SimAppKind, SimAppPatch, SimMeeting, SimUser, SimUserRole};

on_both_databases!(
    a_member_cannot_authorise_an_account_level_app,
    an_account_grant_needs_the_admin_scopes,
    an_admin_with_the_admin_scopes_connects_the_account,
    a_bot_gets_every_token_for_a_members_meeting_from_the_admins_grant,
);

const CLIENT: &str = "account-client";
const WEBHOOK_SECRET: &str = "whsec-of-account-client";

/// A service with one account-level app; returns it and the app's id.
async fn started(backend: Backend) -> Option<(TestApp, String)> {
    let app = spawn_app(backend).await?;
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
