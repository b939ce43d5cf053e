//! `/v2/*`: profiles, meeting lists, local recording tokens, user tokens, scopes.

use crate::common::*;
use axum::http::StatusCode;
use chrono::{Duration, Utc};
use serde_json::json;
use zoom_sim::*;

#[tokio::test]
async fn users_me_describes_the_authorizing_user() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let t = zoom.connect(&user.id, None).await;
    let me = zoom.get("/v2/users/me", &t.access).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["id"], user.id);
    assert_eq!(me.body["account_id"], user.account_id);
    assert_eq!(me.body["email"], user.email);
    assert_eq!(me.body["status"], "active");
    assert_eq!(me.body["pmi"], json!(user.pmi));
    assert!(me.body["pmi"].is_u64());
    assert_eq!(me.body["personal_meeting_url"], user.personal_meeting_url);
    assert!(user
        .personal_meeting_url
        .starts_with(&format!("https://us05web.zoom.us/j/{}?pwd=", user.pmi)));
    assert_eq!(user.pmi.to_string().len(), 10);
    for field in ["first_name", "last_name", "type", "timezone"] {
        assert!(!me.body[field].is_null(), "{field}");
    }
}

#[tokio::test]
async fn missing_or_unknown_bearer_tokens_are_refused() {
    let zoom = Zoom::start().await;
    let none = answer(
        zoom.http
            .get(format!("{}/v2/users/me", zoom.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (none.status, none.body["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!(4700))
    );
    let bogus = zoom.get("/v2/users/me", "zsim_at_nope").await;
    assert_eq!(
        (bogus.status, bogus.body.clone()),
        (
            StatusCode::UNAUTHORIZED,
            json!({"code": 124, "message": "Invalid access token."})
        )
    );
    // A refresh token is not an access token.
    let user = zoom.user().await;
    let t = zoom.connect(&user.id, None).await;
    assert_eq!(zoom.get("/v2/users/me", &t.refresh).await.body["code"], 124);
}

#[tokio::test]
async fn each_endpoint_needs_its_scope() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let t = zoom.connect(&user.id, Some("user:read:user")).await;
    assert_eq!(
        zoom.get("/v2/users/me", &t.access).await.status,
        StatusCode::OK
    );
    let pmi = user.pmi;
    for path in [
        "/v2/users/me/meetings".to_owned(),
        format!("/v2/meetings/{pmi}/jointoken/local_recording"),
        "/v2/users/me/token?type=zak".to_owned(),
        "/v2/users/me/zak".to_owned(),
        "/v2/users/me/token?type=onbehalf".to_owned(),
    ] {
        let a = zoom.get(&path, &t.access).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(a.body["code"], 4711, "{path}");
        let message = a.body["message"].as_str().unwrap();
        assert!(
            message.starts_with("Invalid access token, does not contain scopes:["),
            "{message}"
        );
    }
    let only_meetings = zoom
        .connect(&user.id, Some("meeting:read:list_meetings"))
        .await;
    let a = zoom.get("/v2/users/me", &only_meetings.access).await;
    assert_eq!(a.body["code"], 4711);
    assert_eq!(
        zoom.get("/v2/users/me/meetings", &only_meetings.access)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn legacy_scope_names_are_accepted() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let t = zoom
        .connect(
            &user.id,
            Some("user:read meeting:read user_zak:read meeting_token:read:local_recording"),
        )
        .await;
    for path in [
        "/v2/users/me".to_owned(),
        "/v2/users/me/meetings".to_owned(),
        "/v2/users/me/zak".to_owned(),
        format!("/v2/meetings/{}/jointoken/local_recording", user.pmi),
    ] {
        assert_eq!(
            zoom.get(&path, &t.access).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
    // Classic `user:read` opens "Get a user's token" (Zoom's API reference lists
    // `user:read` and `user:read:admin` for GET /users/{userId}/token), onbehalf
    // included.
    for path in [
        "/v2/users/me/token?type=zak",
        "/v2/users/me/token?type=onbehalf",
    ] {
        assert_eq!(
            zoom.get(path, &t.access).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
}

/// The scope sets zoomkeeper asks users for (`LOCAL_RECORDING_SCOPES`,
/// `ONBEHALF_SCOPES`), each endpoint by its own scopes. Zoom's API reference (the
/// Users OpenAPI document, mirrored at
/// https://developers.qodex.ai/zoom-public/zoom-user-api/users-userid-token/get-a-users-token
/// and .../users-me-zak/get-the-users-zak): "Get a user's token" needs
/// `user:read:token` / `user:read` (`:admin` for other users), "Get the user's ZAK"
/// needs `user:read:zak` / `user_zak:read`. A forum report of the classic scope
/// error: https://devforum.zoom.us/t/scopes-to-include-user-zak-read/58685
#[tokio::test]
async fn the_token_endpoint_and_the_zak_endpoint_need_their_own_scopes() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    // The default grant is the local recording set, not every scope.
    assert_eq!(DEFAULT_SCOPES, LOCAL_RECORDING_SCOPES);
    let local = zoom.connect(&user.id, None).await;
    assert_eq!(
        zoom.get("/v2/users/me/zak", &local.access).await.status,
        StatusCode::OK
    );
    for path in [
        "/v2/users/me/token?type=zak",
        "/v2/users/me/token?type=onbehalf",
    ] {
        let a = zoom.get(path, &local.access).await;
        assert_eq!(
            (a.status, a.body["code"].clone()),
            (StatusCode::BAD_REQUEST, json!(4711)),
            "{path}"
        );
        assert!(
            a.body["message"]
                .as_str()
                .unwrap()
                .contains("user:read:token"),
            "{}",
            a.body
        );
    }
    let onbehalf = zoom
        .connect(&user.id, Some(&ONBEHALF_SCOPES.join(" ")))
        .await;
    for path in [
        "/v2/users/me/token?type=zak",
        "/v2/users/me/token?type=onbehalf",
    ] {
        assert_eq!(
            zoom.get(path, &onbehalf.access).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
    let a = zoom.get("/v2/users/me/zak", &onbehalf.access).await;
    assert_eq!(a.body["code"], 4711, "{}", a.body);
    // Admin names open the endpoint too.
    let admin = zoom
        .connect(&user.id, Some("user:read:token:admin user:read:zak:admin"))
        .await;
    for path in ["/v2/users/me/token?type=zak", "/v2/users/me/zak"] {
        assert_eq!(
            zoom.get(path, &admin.access).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
}

/// "Get the user's ZAK": "ZAKs obtained with this endpoint expire five minutes after
/// receipt". "Get a user's token": `ttl` sets the ZAK's lifetime in seconds,
/// "Defaults to 7200", "The maximum value is one year". Same sources as above.
/// Zoom does not say how it answers a `ttl` beyond a year; the stricter reading is
/// a refusal (400 code 300), not a silent cap.
#[tokio::test]
async fn zaks_live_five_minutes_from_the_zak_endpoint_and_ttl_from_the_token_endpoint() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let t = zoom
        .connect(&user.id, Some("user:read:zak user:read:token"))
        .await;
    let lifetime =
        |info: &SimTokenInfo| (info.expires_at.unwrap() - info.issued_at.unwrap()).num_seconds();
    let mut lifetimes = Vec::new();
    for path in [
        "/v2/users/me/zak",
        "/v2/users/me/token?type=zak",
        "/v2/users/me/token?type=zak&ttl=600",
        "/v2/users/me/token?type=zak&ttl=31536000",
    ] {
        let a = zoom.get(path, &t.access).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
        let info = zoom
            .control
            .token_info(a.body["token"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(info.token_type, "zak");
        lifetimes.push(lifetime(&info));
    }
    assert_eq!(lifetimes, vec![300, 7200, 600, 31_536_000]);
    for bad in ["0", "-5", "31536001", "soon"] {
        let a = zoom
            .get(&format!("/v2/users/me/token?type=zak&ttl={bad}"), &t.access)
            .await;
        assert_eq!(
            (a.status, a.body["code"].clone()),
            (StatusCode::BAD_REQUEST, json!(300)),
            "{bad}"
        );
    }
    // A ZAK from /users/me/zak is expired five minutes later.
    let a = zoom.get("/v2/users/me/zak", &t.access).await;
    let zak = a.body["token"].as_str().unwrap().to_owned();
    zoom.control
        .set_config(&SimConfig {
            clock_offset_s: Some(301),
            ..Default::default()
        })
        .await
        .unwrap();
    let info = zoom.control.token_info(&zak).await.unwrap().unwrap();
    assert_eq!(info.status, "expired");
}

/// Onbehalf tokens are single-use and bound to the meeting they were minted for
/// (Zoom's "Get a user's token", `type=onbehalf` with `meeting_id`; Zoom's Meeting
/// SDK docs for joining on behalf of a user:
/// https://developers.zoom.us/docs/meeting-sdk/auth/). How Zoom refuses a reused or
/// misused token is not documented; the simulator refuses the join, the stricter
/// reading, and `/_sim/tokens/{token}` shows it `used`.
#[tokio::test]
async fn onbehalf_tokens_work_once_and_for_their_meeting() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let t = zoom
        .connect(&user.id, Some(&ONBEHALF_SCOPES.join(" ")))
        .await;
    let mint = |meeting: &'static str| {
        let zoom = &zoom;
        let access = t.access.clone();
        async move {
            let a = zoom
                .get(
                    &format!("/v2/users/me/token?type=onbehalf&meeting_id={meeting}"),
                    &access,
                )
                .await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.body);
            a.body["token"].as_str().unwrap().to_owned()
        }
    };
    let token = mint("85746065432").await;
    let info = zoom.control.token_info(&token).await.unwrap().unwrap();
    assert_eq!(
        (info.status.as_str(), info.meeting_id),
        ("active", Some(85746065432))
    );
    // Another meeting is refused, and does not use the token up.
    let err = zoom
        .control
        .join_with_token(&token, 11122233344)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("another meeting"), "{err}");
    zoom.control
        .join_with_token(&token, 85746065432)
        .await
        .unwrap();
    let info = zoom.control.token_info(&token).await.unwrap().unwrap();
    assert_eq!(info.status, "used");
    let err = zoom
        .control
        .join_with_token(&token, 85746065432)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already used"), "{err}");
    // A ZAK is not an onbehalf token.
    let zak = zoom.get("/v2/users/me/token?type=zak", &t.access).await;
    assert!(zoom
        .control
        .join_with_token(zak.body["token"].as_str().unwrap(), 85746065432)
        .await
        .is_err());
}

/// The local recording token needs the host's "Local recording" setting on. Zoom's
/// Meetings OpenAPI document, "Get a meeting's join token for local recording"
/// (mirrored at https://withone.ai/knowledge/zoom/conn_mod_def%3A%3AGJ8eklsRUYo%3A%3AJ2JLJi9fTROWBhpF-DHGCg):
/// "Prerequisites: The Local recording user setting must be enabled in the Zoom web
/// portal", errors 400 with code 3000. The exact message, "Not allowed to start
/// local recording", is the one issue 11 reports Zoom answering.
#[tokio::test]
async fn local_recording_token_needs_the_hosts_local_recording_setting() {
    let zoom = Zoom::start().await;
    let user = zoom
        .control
        .create_user(&SimUser {
            local_recording: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    let t = zoom.connect(&user.id, None).await;
    let path = format!("/v2/meetings/{}/jointoken/local_recording", user.pmi);
    let a = zoom.get(&path, &t.access).await;
    assert_eq!(
        (a.status, a.body.clone()),
        (
            StatusCode::BAD_REQUEST,
            json!({"code": 3000, "message": "Not allowed to start local recording"})
        )
    );
    zoom.control
        .update_user(
            &user.id,
            &SimUserPatch {
                local_recording: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(zoom.get(&path, &t.access).await.status, StatusCode::OK);
}

#[tokio::test]
async fn meeting_list_paginates_beyond_one_page() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let base = Utc::now() + Duration::days(1);
    for i in 0..35 {
        zoom.control
            .create_meeting(
                &user.id,
                &SimMeeting {
                    topic: Some(format!("m{i}")),
                    start_time: Some(base + Duration::hours(i)),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    let t = zoom.connect(&user.id, None).await;

    let default_page = zoom
        .get("/v2/users/me/meetings?type=scheduled", &t.access)
        .await;
    assert_eq!(default_page.body["page_size"], 30);
    assert_eq!(default_page.body["total_records"], 35);
    assert_eq!(default_page.body["meetings"].as_array().unwrap().len(), 30);

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let path = format!(
            "/v2/users/{}/meetings?type=upcoming&page_size=10&next_page_token={token}",
            user.id
        );
        let page = zoom.get(&path, &t.access).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        pages += 1;
        for m in page.body["meetings"].as_array().unwrap() {
            assert!(m["id"].is_u64());
            assert_eq!(m["host_id"], user.id);
            for field in [
                "uuid",
                "topic",
                "type",
                "start_time",
                "duration",
                "timezone",
                "join_url",
                "created_at",
            ] {
                assert!(!m[field].is_null(), "{field}");
            }
            seen.push(m["topic"].as_str().unwrap().to_owned());
        }
        token = page.body["next_page_token"].as_str().unwrap().to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(pages, 4);
    assert_eq!(seen, (0..35).map(|i| format!("m{i}")).collect::<Vec<_>>());

    let big = zoom
        .get("/v2/users/me/meetings?page_size=1000", &t.access)
        .await;
    assert_eq!(big.body["page_size"], 300);
    let bad = zoom
        .get("/v2/users/me/meetings?next_page_token=garbage", &t.access)
        .await;
    assert_eq!(
        (bad.status, bad.body["code"].clone()),
        (StatusCode::BAD_REQUEST, json!(300))
    );
}

#[tokio::test]
async fn upcoming_excludes_past_meetings_and_live_shows_running_ones() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let past = Utc::now() - Duration::days(2);
    let running = Utc::now() - Duration::minutes(10);
    zoom.control
        .create_meeting(
            &user.id,
            &SimMeeting {
                start_time: Some(past),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let live = zoom
        .control
        .create_meeting(
            &user.id,
            &SimMeeting {
                start_time: Some(running),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    zoom.control
        .create_meeting(&user.id, &SimMeeting::default())
        .await
        .unwrap();
    let t = zoom.connect(&user.id, None).await;
    let count = |b: &serde_json::Value| b["total_records"].as_u64().unwrap();
    assert_eq!(
        count(
            &zoom
                .get("/v2/users/me/meetings?type=scheduled", &t.access)
                .await
                .body
        ),
        3
    );
    assert_eq!(
        count(
            &zoom
                .get("/v2/users/me/meetings?type=upcoming", &t.access)
                .await
                .body
        ),
        2
    );
    let l = zoom
        .get("/v2/users/me/meetings?type=live", &t.access)
        .await
        .body;
    assert_eq!(l["meetings"][0]["id"], json!(live.id));
}

#[tokio::test]
async fn a_user_level_app_cannot_list_another_users_meetings() {
    let zoom = Zoom::start().await;
    let alice = zoom.user().await;
    let bob = zoom.user().await;
    let t = zoom.connect(&alice.id, None).await;
    let a = zoom
        .get(&format!("/v2/users/{}/meetings", bob.id), &t.access)
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = zoom.get("/v2/users/nobody/meetings", &t.access).await;
    assert_eq!(
        (a.status, a.body["code"].clone()),
        (StatusCode::NOT_FOUND, json!(1001))
    );
}

#[tokio::test]
async fn local_recording_token_is_only_for_the_meeting_host() {
    let zoom = Zoom::start().await;
    let host = zoom.user().await;
    let guest = zoom.user().await;
    let meeting = zoom
        .control
        .create_meeting(&host.id, &SimMeeting::default())
        .await
        .unwrap();
    assert!((10_000_000_000..100_000_000_000).contains(&meeting.id));
    let host_t = zoom.connect(&host.id, None).await;
    let guest_t = zoom.connect(&guest.id, None).await;
    let path = format!(
        "/v2/meetings/{}/jointoken/local_recording?bypass_waiting_room=true",
        meeting.id
    );

    let ok = zoom.get(&path, &host_t.access).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["expire_in"], 120);
    let token = ok.body["token"].as_str().unwrap();
    let info = zoom.control.token_info(token).await.unwrap().unwrap();
    assert_eq!(info.token_type, "local_recording");
    assert_eq!(info.user_id.as_deref(), Some(host.id.as_str()));
    assert_eq!(info.meeting_id, Some(meeting.id));
    assert_eq!(info.bypass_waiting_room, Some(true));

    let refused = zoom.get(&path, &guest_t.access).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.body["code"], 3000);
}

#[tokio::test]
async fn unknown_meeting_is_3001() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let t = zoom.connect(&user.id, None).await;
    let a = zoom
        .get(
            "/v2/meetings/98765432101/jointoken/local_recording",
            &t.access,
        )
        .await;
    assert_eq!(
        (a.status, a.body.clone()),
        (
            StatusCode::NOT_FOUND,
            json!({"code": 3001, "message": "Meeting does not exist: 98765432101."})
        )
    );
    let deleted = zoom
        .control
        .create_meeting(&user.id, &SimMeeting::default())
        .await
        .unwrap();
    zoom.control.delete_meeting(deleted.id).await.unwrap();
    let a = zoom
        .get(
            &format!("/v2/meetings/{}/jointoken/local_recording", deleted.id),
            &t.access,
        )
        .await;
    assert_eq!(a.body["code"], 3001);
}

#[tokio::test]
async fn pmi_counts_as_a_meeting_hosted_by_its_owner() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let other = zoom.user().await;
    let t = zoom.connect(&user.id, None).await;
    let path = format!("/v2/meetings/{}/jointoken/local_recording", user.pmi);
    let a = zoom.get(&path, &t.access).await;
    assert_eq!(a.status, StatusCode::OK);
    let info = zoom
        .control
        .token_info(a.body["token"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.meeting_id, Some(user.pmi));
    let o = zoom.connect(&other.id, None).await;
    assert_eq!(zoom.get(&path, &o.access).await.body["code"], 3000);

    // After a PMI change the old number is no meeting at all.
    zoom.control
        .update_user(
            &user.id,
            &SimUserPatch {
                pmi: Some(7_777_777_777),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(zoom.get(&path, &t.access).await.body["code"], 3001);
    assert_eq!(
        zoom.get(
            "/v2/meetings/7777777777/jointoken/local_recording",
            &t.access
        )
        .await
        .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn account_admin_of_an_account_level_app_may_get_the_local_recording_token() {
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
    let host = zoom.user().await;
    let admin = zoom
        .control
        .create_user(&SimUser {
            account_id: Some(host.account_id.clone()),
            role: Some(SimUserRole::Admin),
            ..Default::default()
        })
        .await
        .unwrap();
    let member = zoom
        .control
        .create_user(&SimUser {
            account_id: Some(host.account_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(member.role, SimUserRole::Member);
    let outsider = zoom
        .control
        .create_user(&SimUser {
            role: Some(SimUserRole::Admin),
            ..Default::default()
        })
        .await
        .unwrap();
    let meeting = zoom
        .control
        .create_meeting(&host.id, &SimMeeting::default())
        .await
        .unwrap();
    let path = format!("/v2/meetings/{}/jointoken/local_recording", meeting.id);

    // The admin's grant holds the admin scopes (the default grant alone does not do:
    // see the `accounts` tests).
    let admin_t = zoom
        .connect(
            &admin.id,
            Some("meeting:read:local_recording_token:admin meeting:read:list_meetings:admin"),
        )
        .await;
    assert_eq!(
        zoom.get(&path, &admin_t.access).await.status,
        StatusCode::OK
    );
    let member_t = zoom.connect(&member.id, None).await;
    assert_eq!(zoom.get(&path, &member_t.access).await.body["code"], 3000);
    let outsider_t = zoom.connect(&outsider.id, None).await;
    assert_eq!(zoom.get(&path, &outsider_t.access).await.body["code"], 3000);
    // The admin may also list the host's meetings through an account-level app.
    let list = zoom
        .get(&format!("/v2/users/{}/meetings", host.id), &admin_t.access)
        .await;
    assert_eq!(list.body["total_records"], 1);

    // The same admin through a user-level app: host only.
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
    assert_eq!(zoom.get(&path, &admin_t.access).await.body["code"], 3000);
}

#[tokio::test]
async fn zak_and_onbehalf_tokens_name_their_user_and_meeting() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let t = zoom
        .connect(&user.id, Some("user:read:zak user:read:token"))
        .await;
    for path in ["/v2/users/me/zak", "/v2/users/me/token?type=zak"] {
        let a = zoom.get(path, &t.access).await;
        assert_eq!(a.status, StatusCode::OK);
        let info = zoom
            .control
            .token_info(a.body["token"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (info.token_type.as_str(), info.user_id.as_deref()),
            ("zak", Some(user.id.as_str()))
        );
    }
    let a = zoom
        .get(
            "/v2/users/me/token?type=onbehalf&meeting_id=85746065432",
            &t.access,
        )
        .await;
    let token = a.body["token"].as_str().unwrap();
    assert!(
        token.contains(&user.id) && token.contains("85746065432"),
        "{token}"
    );
    let info = zoom.control.token_info(token).await.unwrap().unwrap();
    assert_eq!(info.token_type, "onbehalf");
    assert_eq!(info.meeting_id, Some(85746065432));
    assert_eq!(info.client_id, CLIENT_ID);

    let bad = zoom.get("/v2/users/me/token?type=weird", &t.access).await;
    assert_eq!(
        (bad.status, bad.body["code"].clone()),
        (StatusCode::BAD_REQUEST, json!(300))
    );
    assert!(zoom
        .control
        .token_info("never-issued")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn inactive_users_are_refused_but_can_read_their_profile() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let t = zoom.connect(&user.id, None).await;
    zoom.control
        .update_user(
            &user.id,
            &SimUserPatch {
                status: Some(SimUserStatus::Inactive),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let me = zoom.get("/v2/users/me", &t.access).await;
    assert_eq!(me.body["status"], "inactive");
    for path in ["/v2/users/me/meetings", "/v2/users/me/zak"] {
        let a = zoom.get(path, &t.access).await;
        assert_eq!(
            (a.status, a.body["code"].clone()),
            (StatusCode::BAD_REQUEST, json!(1001)),
            "{path}"
        );
    }
}

#[tokio::test]
async fn api_calls_are_counted_per_endpoint() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let t = zoom.connect(&user.id, None).await;
    zoom.get("/v2/users/me", &t.access).await;
    zoom.get("/v2/users/me", &t.access).await;
    zoom.get(
        &format!("/v2/meetings/{}/jointoken/local_recording", user.pmi),
        &t.access,
    )
    .await;
    let stats = zoom.control.stats().await.unwrap();
    assert_eq!(stats.api_calls, 4);
    assert_eq!(stats.api_calls_by_endpoint["GET /v2/users/me"], 2);
    assert_eq!(stats.api_calls_by_endpoint["POST /oauth/token"], 1);
    assert_eq!(
        stats.api_calls_by_endpoint["GET /v2/meetings/{meeting_id}/jointoken/local_recording"],
        1
    );
}

#[tokio::test]
async fn a_meeting_can_be_seeded_with_a_chosen_9_to_11_digit_number() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let t = zoom.connect(&user.id, None).await;
    for id in [123_456_789, 9_876_543_210, 98_765_432_101] {
        let created = zoom
            .control
            .create_meeting(
                &user.id,
                &SimMeeting {
                    id: Some(id),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(created.id, id);
        assert!(created.join_url.contains(&format!("/j/{id}?")));
        let a = zoom
            .get(
                &format!("/v2/meetings/{id}/jointoken/local_recording"),
                &t.access,
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{id}: {}", a.body);
    }
    let listed = zoom.get("/v2/users/me/meetings", &t.access).await;
    assert!(listed.body["meetings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == 123_456_789));
    for (id, status) in [
        (12_345_678, 400),      // 8 digits
        (123_456_789_012, 400), // 12 digits
        (123_456_789, 409),     // taken above
        (user.pmi, 409),        // a PMI is a meeting number too
    ] {
        let err = zoom
            .control
            .create_meeting(
                &user.id,
                &SimMeeting {
                    id: Some(id),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&status.to_string()), "{id}: {err}");
    }
}

/// `type=scheduled` is "All valid previous (unexpired) meetings, live meetings, and
/// upcoming scheduled meetings" (Zoom's Meeting API OpenAPI document, List meetings,
/// `type`); a non-recurring meeting ID expires 30 days after the meeting, a meeting
/// with no fixed time 365 days after it was made (Zoom support, meeting ID
/// expiration).
#[tokio::test]
async fn scheduled_lists_only_unexpired_meetings() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let at = |days: i64| Some(Utc::now() + Duration::days(days));
    let mut ids = Vec::new();
    for (topic, start) in [("expired", at(-40)), ("recent", at(-10)), ("soon", at(1))] {
        let m = zoom
            .control
            .create_meeting(
                &user.id,
                &SimMeeting {
                    topic: Some(topic.into()),
                    start_time: start,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        ids.push(m.id);
    }
    let t = zoom.connect(&user.id, None).await;
    let listed = |page: &Answer| -> Vec<String> {
        page.body["meetings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["topic"].as_str().unwrap().to_owned())
            .collect()
    };
    let page = zoom
        .get("/v2/users/me/meetings?type=scheduled", &t.access)
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(listed(&page), ["recent", "soon"]);
    assert_eq!(page.body["total_records"], 2);
    // 21 days on, the recent one has expired too.
    zoom.control
        .set_config(&SimConfig {
            clock_offset_s: Some(21 * 24 * 3600),
            ..Default::default()
        })
        .await
        .unwrap();
    let t = zoom.connect(&user.id, None).await;
    let page = zoom
        .get("/v2/users/me/meetings?type=scheduled", &t.access)
        .await;
    assert_eq!(listed(&page), ["soon"]);
}

/// `next_page_token`: "The expiration period for this token is 15 minutes" (Zoom's
/// Meeting API OpenAPI document, List meetings); an expired one is answered 400,
/// code 300 "The next page token is invalid or expired." as Zoom's report and
/// dashboard APIs document for code 300.
#[tokio::test]
async fn page_tokens_expire_after_15_minutes_on_zooms_clock() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    for i in 0..3 {
        zoom.control
            .create_meeting(
                &user.id,
                &SimMeeting {
                    topic: Some(format!("m{i}")),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    let t = zoom.connect(&user.id, None).await;
    let first = zoom
        .get(
            "/v2/users/me/meetings?type=scheduled&page_size=1",
            &t.access,
        )
        .await;
    let token = first.body["next_page_token"].as_str().unwrap().to_owned();
    let next = format!("/v2/users/me/meetings?type=scheduled&page_size=1&next_page_token={token}");
    // Within 15 minutes the token works.
    zoom.control
        .set_config(&SimConfig {
            clock_offset_s: Some(14 * 60),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(zoom.get(&next, &t.access).await.status, StatusCode::OK);
    zoom.control
        .set_config(&SimConfig {
            clock_offset_s: Some(15 * 60 + 1),
            ..Default::default()
        })
        .await
        .unwrap();
    let expired = zoom.get(&next, &t.access).await;
    assert_eq!(expired.status, StatusCode::BAD_REQUEST);
    assert_eq!(expired.body["code"], 300);
    assert_eq!(
        expired.body["message"],
        "The next page token is invalid or expired."
    );
    // The fault that stands in for 15 minutes passing between two pages.
    zoom.control
        .set_config(&SimConfig {
            clock_offset_s: Some(0),
            ..Default::default()
        })
        .await
        .unwrap();
    zoom.control
        .set_faults(&SimFaults {
            expire_next_page_tokens: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        zoom.get(&next, &t.access).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(zoom.get(&next, &t.access).await.status, StatusCode::OK);
}
