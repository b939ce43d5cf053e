//! Account-level apps (DESIGN.md §15): an account admin's grant lists the account's
//! users, any user's meetings, mints ZAK/onbehalf tokens for any user and local
//! recording tokens for any meeting of the account — each only with the endpoint's
//! admin scope, and only for an owner or admin. Plus the bulk account control call and
//! the account's rate limits per category.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::*;
use axum::http::StatusCode;
use serde_json::{json, Value};
use testkit::Receiver;
use zoom_sim::*;

/// A simulator whose app is account-level.
async fn account_app() -> Zoom {
    let zoom = Zoom::start().await;
    zoom.control
        .update_app(
            CLIENT_ID,
            &SimAppPatch {
                kind: Some(SimAppKind::AccountLevel),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    zoom
}

async fn account(zoom: &Zoom, members: u32, meetings_per_user: u32) -> SimAccountCreated {
    zoom.control
        .create_account(&SimAccount {
            members,
            meetings_per_user,
            ..Default::default()
        })
        .await
        .expect("account created")
}

fn admin_scopes() -> String {
    ACCOUNT_LEVEL_SCOPES.join(" ")
}

/// `(status, code)` of a Zoom error answer.
fn refusal(a: &Answer) -> (StatusCode, Value) {
    (a.status, a.body["code"].clone())
}

fn ids(page: &Value) -> Vec<String> {
    page["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn the_bulk_call_makes_an_admin_members_and_their_meetings_without_webhooks() {
    let zoom = account_app().await;
    let receiver = Receiver::for_zoom(WEBHOOK_SECRET).await;
    zoom.control
        .update_app(
            CLIENT_ID,
            &SimAppPatch {
                webhook_url: Some(receiver.url()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let a = zoom
        .control
        .create_account(&SimAccount {
            account_id: Some("acme".into()),
            admin: Some(SimUser {
                email: Some("boss@acme.test".into()),
                ..Default::default()
            }),
            members: 20,
            meetings_per_user: 3,
            send_webhooks: None,
        })
        .await
        .unwrap();
    assert_eq!(a.account_id, "acme");
    assert_eq!(a.user_ids.len(), 20);
    assert_eq!(a.meeting_ids.len(), 21);
    assert!(a.meeting_ids.values().all(|m| m.len() == 3));
    let users = zoom.control.users().await.unwrap();
    assert_eq!(users.len(), 21);
    assert!(users.iter().all(|u| u.account_id == "acme"));
    let admin = users.iter().find(|u| u.id == a.admin_id).unwrap();
    assert_eq!(
        (admin.role, admin.email.as_str()),
        (SimUserRole::Admin, "boss@acme.test")
    );
    assert!(users
        .iter()
        .filter(|u| u.id != a.admin_id)
        .all(|u| u.role == SimUserRole::Member));

    // Once the admin has installed the app, the bulk call stays quiet unless asked.
    zoom.connect(&a.admin_id, Some(&admin_scopes())).await;
    let quiet = zoom
        .control
        .create_account(&SimAccount {
            account_id: Some("acme".into()),
            members: 5,
            meetings_per_user: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let loud = zoom
        .control
        .create_account(&SimAccount {
            account_id: Some("acme".into()),
            admin: Some(SimUser::default()),
            members: 1,
            meetings_per_user: 2,
            send_webhooks: Some(true),
        })
        .await
        .unwrap();
    assert!(quiet.meeting_ids.values().all(|m| m.len() == 2));
    let hits = receiver.wait_for(4, Duration::from_secs(10)).await;
    let mut announced: Vec<u64> = hits
        .iter()
        .map(|h| {
            assert_eq!(h.json["event"], "meeting.created");
            h.json["payload"]["object"]["id"].as_u64().unwrap()
        })
        .collect();
    announced.sort_unstable();
    let mut expected: Vec<u64> = loud.meeting_ids.values().flatten().copied().collect();
    expected.sort_unstable();
    assert_eq!(announced, expected);
    let deliveries = zoom.control.webhook_deliveries().await.unwrap();
    assert_eq!(deliveries.len(), 4, "nothing for the first two calls");
}

#[tokio::test]
async fn the_bulk_call_refuses_bad_input_and_changes_nothing() {
    let zoom = Zoom::start().await;
    let taken = zoom.user().await;
    let before = zoom.control.users().await.unwrap().len();
    for bad in [
        json!({"members": 20_001}),
        json!({"members": 1000, "meetings_per_user": 1000}),
        json!({"account_id": "a", "admin": {"account_id": "b"}}),
        json!({"admin": {"role": "member"}}),
        json!({"admin": {"id": taken.id}, "members": 3}),
        json!({"members": -1}),
        json!({"member": 3}),
    ] {
        let r = zoom
            .http
            .post(format!("{}/_sim/accounts", zoom.url))
            .json(&bad)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert!(status.is_client_error(), "{bad}: {status}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{bad}"
        );
    }
    assert_eq!(zoom.control.users().await.unwrap().len(), before);
}

/// "List users" pages through 2,500 users with `next_page_token`, 300 at most a page,
/// in creation order, only the admin's own account.
#[tokio::test]
async fn an_admin_pages_through_2500_users_of_the_account_and_no_other() {
    let zoom = account_app().await;
    let a = account(&zoom, 2499, 0).await;
    let other = account(&zoom, 5, 0).await;
    let t = zoom.connect(&a.admin_id, Some(&admin_scopes())).await;

    let first = zoom.get("/v2/users?page_size=1000", &t.access).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["page_size"], 300);
    assert_eq!(first.body["page_number"], 1);
    assert_eq!(first.body["page_count"], 9);
    assert_eq!(first.body["total_records"], 2500);
    let u = &first.body["users"][0];
    assert_eq!(u["id"], a.admin_id);
    assert_eq!(
        (u["role_id"].clone(), u["status"].clone()),
        (json!("1"), json!("active"))
    );
    for field in [
        "email",
        "first_name",
        "last_name",
        "display_name",
        "timezone",
        "created_at",
    ] {
        assert!(u[field].is_string(), "{field}: {u}");
    }
    assert!(u["pmi"].is_u64() && u["type"].is_u64() && u["verified"].is_u64());

    let mut seen = ids(&first.body);
    let mut token = first.body["next_page_token"].as_str().unwrap().to_owned();
    let mut pages = 1;
    while !token.is_empty() {
        let page = zoom
            .get(
                &format!("/v2/users?page_size=300&next_page_token={token}"),
                &t.access,
            )
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        // Zoom's answers to a next_page_token carry no page_count/page_number.
        assert!(page.body.get("page_count").is_none(), "{}", page.body);
        assert_eq!(page.body["total_records"], 2500);
        seen.extend(ids(&page.body));
        token = page.body["next_page_token"].as_str().unwrap().to_owned();
        pages += 1;
    }
    assert_eq!(pages, 9);
    let mut expected = vec![a.admin_id.clone()];
    expected.extend(a.user_ids.iter().cloned());
    assert_eq!(seen, expected, "every user once, in creation order");
    let others: HashSet<&String> = other.user_ids.iter().collect();
    assert!(!seen.iter().any(|id| others.contains(id)));

    // Default page size, and page numbers.
    let d = zoom.get("/v2/users", &t.access).await.body;
    assert_eq!((d["page_size"].clone(), ids(&d).len()), (json!(30), 30));
    let last = zoom
        .get("/v2/users?page_size=300&page_number=9", &t.access)
        .await
        .body;
    assert_eq!(ids(&last), expected[2400..].to_vec());
    assert_eq!(last["next_page_token"], "");
    // A token of another query is refused.
    let foreign = zoom
        .get(
            &format!(
                "/v2/users?status=inactive&next_page_token={}",
                first.body["next_page_token"].as_str().unwrap()
            ),
            &t.access,
        )
        .await;
    assert_eq!(refusal(&foreign), (StatusCode::BAD_REQUEST, json!(300)));
}

#[tokio::test]
async fn list_users_filters_by_status_and_role_and_refuses_unknown_values() {
    let zoom = account_app().await;
    let a = account(&zoom, 4, 0).await;
    zoom.control
        .update_user(
            &a.user_ids[1],
            &SimUserPatch {
                status: Some(SimUserStatus::Inactive),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let t = zoom.connect(&a.admin_id, Some(&admin_scopes())).await;
    let active = zoom.get("/v2/users", &t.access).await.body;
    assert_eq!(active["total_records"], 4);
    assert!(!ids(&active).contains(&a.user_ids[1]));
    let inactive = zoom.get("/v2/users?status=inactive", &t.access).await.body;
    assert_eq!(ids(&inactive), vec![a.user_ids[1].clone()]);
    assert_eq!(inactive["users"][0]["status"], "inactive");
    let admins = zoom.get("/v2/users?role_id=1", &t.access).await.body;
    assert_eq!(ids(&admins), vec![a.admin_id.clone()]);
    for bad in [
        "/v2/users?status=gone",
        "/v2/users?page_size=many",
        "/v2/users?page_number=0",
        "/v2/users?next_page_token=forged",
    ] {
        let r = zoom.get(bad, &t.access).await;
        assert_eq!(refusal(&r), (StatusCode::BAD_REQUEST, json!(300)), "{bad}");
    }
}

/// "List users" needs `user:read:list_users:admin` (classic `user:read:admin`) and an
/// owner or admin, through an account-level app.
#[tokio::test]
async fn list_users_needs_the_admin_scope_and_an_admin() {
    let zoom = account_app().await;
    let a = account(&zoom, 2, 0).await;
    let owner = zoom
        .control
        .create_user(&SimUser {
            account_id: Some(a.account_id.clone()),
            role: Some(SimUserRole::Owner),
            ..Default::default()
        })
        .await
        .unwrap();

    let admin = zoom.connect(&a.admin_id, Some(&admin_scopes())).await;
    assert_eq!(
        zoom.get("/v2/users", &admin.access).await.status,
        StatusCode::OK
    );
    let owner_t = zoom.connect(&owner.id, Some("user:read:admin")).await;
    assert_eq!(
        zoom.get("/v2/users", &owner_t.access).await.status,
        StatusCode::OK
    );

    // The admin without the admin scope.
    let plain = zoom.connect(&a.admin_id, None).await;
    let r = zoom.get("/v2/users", &plain.access).await;
    assert_eq!(refusal(&r), (StatusCode::BAD_REQUEST, json!(4711)));
    assert_eq!(
        r.body["message"],
        "Invalid access token, does not contain scopes:[user:read:list_users:admin, user:read:admin]."
    );
    // A member holding the admin scope.
    let member = zoom.connect(&a.user_ids[0], Some(&admin_scopes())).await;
    let r = zoom.get("/v2/users", &member.access).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (
            StatusCode::BAD_REQUEST,
            json!({"code": 200, "message": "No permission."})
        )
    );
    // The admin through a user-level app (a new authorization: it superseded the
    // admin's earlier tokens).
    let admin = zoom.connect(&a.admin_id, Some(&admin_scopes())).await;
    zoom.control
        .update_app(
            CLIENT_ID,
            &SimAppPatch {
                kind: Some(SimAppKind::UserLevel),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let r = zoom.get("/v2/users", &admin.access).await;
    assert_eq!(refusal(&r), (StatusCode::BAD_REQUEST, json!(200)));
}

#[tokio::test]
async fn an_admin_lists_any_users_meetings_of_the_account_with_the_admin_scope() {
    let zoom = account_app().await;
    let a = account(&zoom, 3, 40).await;
    let other = account(&zoom, 1, 1).await;
    let member_id = &a.user_ids[2];
    let admin = zoom.connect(&a.admin_id, Some(&admin_scopes())).await;

    // Paging through a member's 40 meetings, 30 a page.
    let first = zoom
        .get(&format!("/v2/users/{member_id}/meetings"), &admin.access)
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["total_records"], 40);
    let token = first.body["next_page_token"].as_str().unwrap();
    let second = zoom
        .get(
            &format!("/v2/users/{member_id}/meetings?next_page_token={token}"),
            &admin.access,
        )
        .await;
    let mut listed: Vec<u64> = [&first.body, &second.body]
        .iter()
        .flat_map(|p| p["meetings"].as_array().unwrap().clone())
        .map(|m| {
            assert_eq!(m["host_id"], json!(member_id));
            m["id"].as_u64().unwrap()
        })
        .collect();
    listed.sort_unstable();
    let mut expected = a.meeting_ids[member_id].clone();
    expected.sort_unstable();
    assert_eq!(listed, expected);
    assert_eq!(second.body["next_page_token"], "");

    // The member named by email works too.
    let users = zoom.control.users().await.unwrap();
    let email = &users.iter().find(|u| &u.id == member_id).unwrap().email;
    let by_email = zoom
        .get(&format!("/v2/users/{email}/meetings"), &admin.access)
        .await;
    assert_eq!(by_email.body["total_records"], 40);

    // A user of another account, and an unknown one.
    for target in [other.user_ids[0].as_str(), "nobody"] {
        let r = zoom
            .get(&format!("/v2/users/{target}/meetings"), &admin.access)
            .await;
        assert_eq!(
            (r.status, r.body.clone()),
            (
                StatusCode::NOT_FOUND,
                json!({"code": 1001, "message": format!("User does not exist: {target}.")})
            )
        );
    }

    // The admin's grant without the admin scope: its own meetings only.
    let plain = zoom.connect(&a.admin_id, None).await;
    let own = zoom.get("/v2/users/me/meetings", &plain.access).await;
    assert_eq!(own.body["total_records"], 40);
    let r = zoom
        .get(&format!("/v2/users/{member_id}/meetings"), &plain.access)
        .await;
    assert_eq!(refusal(&r), (StatusCode::BAD_REQUEST, json!(4711)));
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .contains("meeting:read:list_meetings:admin"));

    // A member with the admin scope: own meetings yes, a colleague's no.
    let member = zoom.connect(member_id, Some(&admin_scopes())).await;
    let mine = zoom
        .get(&format!("/v2/users/{member_id}/meetings"), &member.access)
        .await;
    assert_eq!(mine.body["total_records"], 40);
    let r = zoom
        .get(
            &format!("/v2/users/{}/meetings", a.admin_id),
            &member.access,
        )
        .await;
    assert_eq!(refusal(&r), (StatusCode::BAD_REQUEST, json!(200)));
}

#[tokio::test]
async fn an_admin_mints_zak_and_onbehalf_tokens_for_any_user_of_the_account() {
    let zoom = account_app().await;
    let a = account(&zoom, 2, 1).await;
    let other = account(&zoom, 1, 0).await;
    let member_id = &a.user_ids[0];
    let meeting = a.meeting_ids[member_id][0];
    let admin = zoom.connect(&a.admin_id, Some(&admin_scopes())).await;

    let zak = zoom
        .get(
            &format!("/v2/users/{member_id}/token?type=zak"),
            &admin.access,
        )
        .await;
    assert_eq!(zak.status, StatusCode::OK, "{}", zak.body);
    let info = zoom
        .control
        .token_info(zak.body["token"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.token_type, "zak");
    assert_eq!(info.user_id.as_deref(), Some(member_id.as_str()));
    assert_eq!(info.account_id.as_deref(), Some(a.account_id.as_str()));
    assert_eq!(info.minted_by.as_deref(), Some(a.admin_id.as_str()));

    let obf = zoom
        .get(
            &format!("/v2/users/{member_id}/token?type=onbehalf&meeting_id={meeting}"),
            &admin.access,
        )
        .await;
    assert_eq!(obf.status, StatusCode::OK, "{}", obf.body);
    let token = obf.body["token"].as_str().unwrap();
    let info = zoom.control.token_info(token).await.unwrap().unwrap();
    assert_eq!(
        (
            info.token_type.as_str(),
            info.user_id.as_deref(),
            info.meeting_id
        ),
        ("onbehalf", Some(member_id.as_str()), Some(meeting))
    );
    assert_eq!(info.minted_by.as_deref(), Some(a.admin_id.as_str()));
    zoom.control.join_with_token(token, meeting).await.unwrap();

    // The admin's own token names the admin both ways.
    let own = zoom.get("/v2/users/me/token?type=zak", &admin.access).await;
    let info = zoom
        .control
        .token_info(own.body["token"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.user_id, info.minted_by);
    assert_eq!(info.user_id.as_deref(), Some(a.admin_id.as_str()));

    // Refusals: another account's user, no admin scope, a member, an inactive user.
    let r = zoom
        .get(
            &format!("/v2/users/{}/token?type=zak", other.user_ids[0]),
            &admin.access,
        )
        .await;
    assert_eq!(refusal(&r), (StatusCode::NOT_FOUND, json!(1001)));
    let plain = zoom
        .connect(&a.admin_id, Some(&ONBEHALF_SCOPES.join(" ")))
        .await;
    assert_eq!(
        zoom.get("/v2/users/me/token?type=onbehalf", &plain.access)
            .await
            .status,
        StatusCode::OK
    );
    let r = zoom
        .get(
            &format!("/v2/users/{member_id}/token?type=zak"),
            &plain.access,
        )
        .await;
    assert_eq!(refusal(&r), (StatusCode::BAD_REQUEST, json!(4711)));
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .contains("user:read:token:admin"));
    let member = zoom.connect(member_id, Some(&admin_scopes())).await;
    let r = zoom
        .get(
            &format!("/v2/users/{}/token?type=zak", a.user_ids[1]),
            &member.access,
        )
        .await;
    assert_eq!(refusal(&r), (StatusCode::BAD_REQUEST, json!(200)));
    zoom.control
        .update_user(
            &a.user_ids[1],
            &SimUserPatch {
                status: Some(SimUserStatus::Inactive),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let admin = zoom.connect(&a.admin_id, Some(&admin_scopes())).await;
    let r = zoom
        .get(
            &format!("/v2/users/{}/token?type=zak", a.user_ids[1]),
            &admin.access,
        )
        .await;
    assert_eq!(refusal(&r), (StatusCode::BAD_REQUEST, json!(1001)));
}

/// The local recording token of a meeting hosted by a member: the owner or an admin of
/// the host's account, with `meeting:read:local_recording_token:admin` (or classic
/// `meeting_token:read:admin:local_recording`), through an account-level app.
#[tokio::test]
async fn an_admin_gets_the_local_recording_token_of_any_meeting_of_the_account() {
    let zoom = account_app().await;
    let a = account(&zoom, 2, 1).await;
    let other = account(&zoom, 0, 0).await;
    let host = &a.user_ids[0];
    let meeting = a.meeting_ids[host][0];
    let path = format!("/v2/meetings/{meeting}/jointoken/local_recording");
    let host_pmi = zoom
        .control
        .users()
        .await
        .unwrap()
        .into_iter()
        .find(|u| &u.id == host)
        .unwrap()
        .pmi;

    for scopes in [
        admin_scopes().as_str(),
        "meeting_token:read:admin:local_recording",
    ] {
        let admin = zoom.connect(&a.admin_id, Some(scopes)).await;
        let ok = zoom.get(&path, &admin.access).await;
        assert_eq!(ok.status, StatusCode::OK, "{scopes}: {}", ok.body);
        let info = zoom
            .control
            .token_info(ok.body["token"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(info.meeting_id, Some(meeting));
        assert_eq!(info.minted_by.as_deref(), Some(a.admin_id.as_str()));
        // The host's PMI is one of the account's meetings too.
        let pmi = format!("/v2/meetings/{host_pmi}/jointoken/local_recording");
        assert_eq!(zoom.get(&pmi, &admin.access).await.status, StatusCode::OK);
    }
    let refused = json!({"code": 3000, "message": "Cannot access meeting info."});
    // The admin with the non-admin scope only.
    let plain = zoom.connect(&a.admin_id, None).await;
    let r = zoom.get(&path, &plain.access).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (StatusCode::BAD_REQUEST, refused.clone())
    );
    // A member with the admin scope.
    let member = zoom.connect(&a.user_ids[1], Some(&admin_scopes())).await;
    assert_eq!(zoom.get(&path, &member.access).await.body, refused);
    // Another account's admin with the admin scope.
    let outsider = zoom.connect(&other.admin_id, Some(&admin_scopes())).await;
    assert_eq!(zoom.get(&path, &outsider.access).await.body, refused);
}

/// Uninstalling an account-level app (the admin removes it) sends `app_deauthorized`
/// naming the admin and the account, and the admin's grant stops working for every
/// user of the account.
#[tokio::test]
async fn deauthorizing_the_admin_sends_app_deauthorized_and_ends_account_access() {
    let zoom = account_app().await;
    let receiver = Receiver::for_zoom(WEBHOOK_SECRET).await;
    zoom.control
        .update_app(
            CLIENT_ID,
            &SimAppPatch {
                webhook_url: Some(receiver.url()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let a = account(&zoom, 3, 0).await;
    let admin = zoom.connect(&a.admin_id, Some(&admin_scopes())).await;
    assert_eq!(
        zoom.get("/v2/users", &admin.access).await.status,
        StatusCode::OK
    );
    zoom.control
        .deauthorize(&a.admin_id, CLIENT_ID)
        .await
        .unwrap();
    let hits = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(hits[0].json["event"], "app_deauthorized");
    let p = &hits[0].json["payload"];
    assert_eq!(p["user_id"], json!(a.admin_id));
    assert_eq!(p["account_id"], json!(a.account_id));
    assert_eq!(p["client_id"], CLIENT_ID);
    for path in [
        "/v2/users".to_owned(),
        format!("/v2/users/{}/token?type=zak", a.user_ids[0]),
    ] {
        let r = zoom.get(&path, &admin.access).await;
        assert_eq!(
            refusal(&r),
            (StatusCode::UNAUTHORIZED, json!(124)),
            "{path}"
        );
    }
}

/// Zoom's limits are per account and per category: "List users" and the meeting lists
/// are Medium, "Get a user's token" is Light; every grant of the account (the admin's
/// and a member's) draws on the same budget.
#[tokio::test]
async fn account_calls_count_against_the_accounts_budget_per_category() {
    let zoom = account_app().await;
    let a = account(&zoom, 1, 1).await;
    let b = account(&zoom, 0, 0).await;
    let admin = zoom.connect(&a.admin_id, Some(&admin_scopes())).await;
    let member = zoom.connect(&a.user_ids[0], None).await;
    let outsider = zoom.connect(&b.admin_id, Some(&admin_scopes())).await;
    let member_meetings = format!("/v2/users/{}/meetings", a.user_ids[0]);
    let member_token = format!("/v2/users/{}/token?type=zak", a.user_ids[0]);

    // Medium refused outright, Light free: the category decides.
    zoom.control
        .set_faults(&SimFaults {
            rate_limit_medium_per_s: Some(0),
            ..Default::default()
        })
        .await
        .unwrap();
    for path in ["/v2/users", member_meetings.as_str()] {
        let r = zoom.get(path, &admin.access).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{path}");
        assert_eq!(r.headers["x-ratelimit-category"], "Medium", "{path}");
        assert_eq!(r.headers["x-ratelimit-type"], "QPS");
        assert_eq!(r.headers["x-ratelimit-limit"], "0");
        assert_eq!(r.headers["x-ratelimit-remaining"], "0");
        assert_eq!(r.headers["retry-after"], "1");
    }
    assert_eq!(
        zoom.get(&member_token, &admin.access).await.status,
        StatusCode::OK
    );
    zoom.control
        .set_faults(&SimFaults {
            rate_limit_light_per_s: Some(0),
            ..Default::default()
        })
        .await
        .unwrap();
    let r = zoom.get(&member_token, &admin.access).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers["x-ratelimit-category"], "Light");
    assert_eq!(
        zoom.get("/v2/users", &admin.access).await.status,
        StatusCode::OK
    );

    // One budget per account, whichever of its users calls (a daily budget: no clock).
    zoom.control
        .set_faults(&SimFaults {
            daily_limit: Some(3),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        zoom.get("/v2/users", &admin.access).await.status,
        StatusCode::OK
    );
    assert_eq!(
        zoom.get(&member_meetings, &admin.access).await.status,
        StatusCode::OK
    );
    assert_eq!(
        zoom.get("/v2/users/me/meetings", &member.access)
            .await
            .status,
        StatusCode::OK
    );
    let r = zoom.get("/v2/users", &admin.access).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers["x-ratelimit-type"], "Daily-limit");
    assert_eq!(
        zoom.get("/v2/users/me/meetings", &member.access)
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        zoom.get("/v2/users", &outsider.access).await.status,
        StatusCode::OK
    );
}

/// `SimFaults::zoom_pro()`: Zoom's Pro limits (Light 30/s, Medium 20/s, Heavy 10/s,
/// developers.zoom.us/docs/commerce/rate-limits/), and the default stays unlimited.
#[tokio::test]
async fn zoom_pro_limits_list_users_at_twenty_a_second() {
    let pro = SimFaults::zoom_pro();
    assert_eq!(
        (
            pro.rate_limit_light_per_s,
            pro.rate_limit_medium_per_s,
            pro.rate_limit_heavy_per_s,
            pro.daily_limit,
            pro.rate_limit_per_s
        ),
        (Some(30), Some(20), Some(10), None, None)
    );
    let business = SimFaults::zoom_business();
    assert_eq!(
        (
            business.rate_limit_light_per_s,
            business.rate_limit_medium_per_s,
            business.rate_limit_heavy_per_s
        ),
        (Some(80), Some(60), Some(40))
    );

    let zoom = account_app().await;
    let a = account(&zoom, 1, 0).await;
    let admin = zoom.connect(&a.admin_id, Some(&admin_scopes())).await;
    // No limits by default: 25 quick calls all pass.
    for _ in 0..25 {
        assert_eq!(
            zoom.get("/v2/users", &admin.access).await.status,
            StatusCode::OK
        );
    }
    zoom.control.set_faults(&pro).await.unwrap();
    let mut limited = None;
    for _ in 0..100 {
        let r = zoom.get("/v2/users", &admin.access).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("a 429 within 100 quick calls at 20/s");
    assert_eq!(r.headers["x-ratelimit-category"], "Medium");
    assert_eq!(r.headers["x-ratelimit-limit"], "20");
}
