//! `/oauth/token` and `/oauth/revoke`, as Zoom documents them.

use std::sync::Arc;

use crate::common::*;
use axum::http::StatusCode;
use serde_json::json;
use zoom_sim::*;

#[tokio::test]
async fn authorization_code_gives_tokens_once() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let code = zoom.code(&user.id, None).await;

    let first = zoom.exchange(&code).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body["token_type"], "bearer");
    assert_eq!(first.body["expires_in"], 3599);
    assert_eq!(first.body["api_url"], zoom.url);
    assert_eq!(first.body["scope"], DEFAULT_SCOPES.join(" "));
    assert!(first.body["refresh_token"].is_string());

    // Zoom answers a used (or unknown) code with `invalid_request` and echoes the
    // code: https://devforum.zoom.us/t/zoom-auth-redirect-invalid-invalid-authorization-code/12302
    // ("Zoom API error: invalid_request, reason: Invalid authorization code …") and
    // https://github.com/Jericho/ZoomNet/issues/36 (a reused code answered
    // {"reason": "Invalid authorization code …", "error": "invalid_request"}).
    let second = zoom.exchange(&code).await;
    assert_eq!(second.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        second.body,
        json!({"reason": format!("Invalid authorization code {code}"), "error": "invalid_request"})
    );
    let unknown = zoom.exchange("not-a-code-we-issued").await;
    assert_eq!(
        unknown.body,
        json!({"reason": "Invalid authorization code not-a-code-we-issued", "error": "invalid_request"})
    );
    assert_eq!(
        zoom.control
            .stats()
            .await
            .unwrap()
            .authorization_code_grants,
        1
    );
}

#[tokio::test]
async fn code_older_than_code_ttl_is_rejected() {
    let zoom = Zoom::start().await;
    zoom.control
        .set_config(&SimConfig {
            code_ttl_s: Some(0),
            ..Default::default()
        })
        .await
        .unwrap();
    let user = zoom.user().await;
    let code = zoom.code(&user.id, None).await;
    let a = zoom.exchange(&code).await;
    // Zoom's OAuth error table (https://developers.zoom.us/docs/integrations/oauth-error-messages/):
    // 4733 "Code is expired.". Zoom documents the code and message, not the `error`
    // value; the simulator answers `invalid_request` as for a bad code, the stricter
    // reading (a client that only treats `invalid_grant` as a refused code fails).
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        a.body,
        json!({"reason": "Code is expired.", "error": "invalid_request"})
    );
}

#[tokio::test]
async fn code_expires_when_the_clock_passes_five_minutes() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let code = zoom.code(&user.id, None).await;
    zoom.control
        .set_config(&SimConfig {
            clock_offset_s: Some(301),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        zoom.exchange(&code).await.body["reason"],
        "Code is expired."
    );
}

#[tokio::test]
async fn redirect_uri_must_match_the_authorize_request_exactly() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let code = zoom.code(&user.id, None).await;
    for wrong in [
        &format!("{REDIRECT_URI}/"),
        "https://app.example.com/zoom/CALLBACK",
        "",
    ] {
        let a = zoom
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", wrong),
            ])
            .await;
        // Zoom's OAuth error table: 4709 "Redirect URI mismatch."
        // (https://developers.zoom.us/docs/integrations/oauth-error-messages/).
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{wrong}");
        assert_eq!(
            a.body,
            json!({"reason": "Redirect URI mismatch.", "error": "invalid_request"})
        );
    }
    // A mismatch does not burn the code.
    assert_eq!(zoom.exchange(&code).await.status, StatusCode::OK);
}

#[tokio::test]
async fn pkce_code_verifier_is_checked_when_a_challenge_was_given() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let code = zoom
        .control
        .authorize(&SimAuthorize {
            client_id: CLIENT_ID.into(),
            user_id: user.id.clone(),
            redirect_uri: REDIRECT_URI.into(),
            code_challenge: Some(pkce_challenge(verifier)),
            ..Default::default()
        })
        .await
        .unwrap();
    let with = |v: &'static str| {
        let code = code.clone();
        let zoom = &zoom;
        async move {
            let mut form = vec![
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT_URI),
            ];
            if !v.is_empty() {
                form.push(("code_verifier", v));
            }
            zoom.token(&form).await
        }
    };
    let missing = with("").await;
    assert_eq!(
        missing.body,
        json!({"reason": "Invalid code_verifier", "error": "invalid_grant"})
    );
    assert_eq!(
        with("not-the-verifier").await.body["error"],
        "invalid_grant"
    );
    assert_eq!(
        with("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
            .await
            .status,
        StatusCode::OK
    );
}

#[test]
fn pkce_challenge_matches_rfc_7636_appendix_b() {
    // RFC 7636 Appendix B: this verifier has this S256 challenge.
    assert_eq!(
        pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
}

#[tokio::test]
async fn wrong_or_missing_client_credentials_are_invalid_client() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let code = zoom.code(&user.id, None).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
    ];
    let wrong = zoom.token_as(CLIENT_ID, "not-the-secret", &form).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body["error"], "invalid_client");
    let unknown = zoom.token_as("no-such-app", CLIENT_SECRET, &form).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.body["error"], "invalid_client");

    let no_auth = answer(
        zoom.http
            .post(format!("{}/oauth/token", zoom.url))
            .form(&form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(no_auth.status, StatusCode::UNAUTHORIZED);
    assert_eq!(no_auth.body["error"], "invalid_client");
    let garbage = answer(
        zoom.http
            .post(format!("{}/oauth/token", zoom.url))
            .header("authorization", "Basic %%%not-base64")
            .form(&form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(garbage.body["error"], "invalid_client");
    // None of that burnt the code.
    assert_eq!(zoom.exchange(&code).await.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_grant_type_and_malformed_requests_are_4xx_json() {
    let zoom = Zoom::start().await;
    let a = zoom.token(&[("grant_type", "password")]).await;
    assert_eq!(
        (a.status, a.body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
    let a = zoom.token(&[]).await;
    assert_eq!(
        (a.status, a.body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let a = zoom.token(&[("grant_type", "refresh_token")]).await;
    assert_eq!(a.body["error"], "invalid_request");
    let a = zoom.token(&[("grant_type", "authorization_code")]).await;
    assert_eq!(a.body["error"], "invalid_request");
}

#[tokio::test]
async fn refresh_rotates_and_the_old_refresh_token_dies_at_once() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let first = zoom.connect(&user.id, None).await;

    let r = zoom.refresh(&first.refresh).await;
    assert_eq!(r.status, StatusCode::OK);
    let second = tokens(&r.body);
    assert_ne!(second.refresh, first.refresh);
    assert_eq!(r.body["scope"], DEFAULT_SCOPES.join(" "));

    let stale = zoom.refresh(&first.refresh).await;
    assert_eq!(stale.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        stale.body,
        json!({"reason": "Invalid Token!", "error": "invalid_grant"})
    );

    // The rotated-away token is stale; the new one still works; old access tokens live on.
    assert_eq!(zoom.refresh(&second.refresh).await.status, StatusCode::OK);
    assert_eq!(
        zoom.get("/v2/users/me", &first.access).await.status,
        StatusCode::OK
    );

    let stats = zoom.control.stats().await.unwrap();
    assert_eq!(stats.refresh_grants, 2);
    assert_eq!(stats.stale_refresh_token_uses, 1);
    let info = zoom
        .control
        .token_info(&first.refresh)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (info.token_type.as_str(), info.status.as_str()),
        ("refresh_token", "rotated")
    );
    assert_eq!(info.user_id.as_deref(), Some(user.id.as_str()));
    assert_eq!(info.client_id, CLIENT_ID);
}

// Several worker threads, so the racers really run at once inside the simulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_with_one_token_have_exactly_one_winner() {
    let zoom = Arc::new(Zoom::start().await);
    let user = zoom.user().await;
    let t = zoom.connect(&user.id, None).await;
    let racers = 16;
    let handles: Vec<_> = (0..racers)
        .map(|_| {
            let zoom = zoom.clone();
            let rt = t.refresh.clone();
            tokio::spawn(async move { zoom.refresh(&rt).await })
        })
        .collect();
    let mut ok = 0;
    for h in handles {
        let a = h.await.unwrap();
        match a.status {
            StatusCode::OK => ok += 1,
            _ => assert_eq!(
                a.body,
                json!({"reason": "Invalid Token!", "error": "invalid_grant"})
            ),
        }
    }
    assert_eq!(ok, 1);
    let stats = zoom.control.stats().await.unwrap();
    assert_eq!(stats.refresh_grants, 1);
    assert_eq!(stats.stale_refresh_token_uses, racers - 1);
}

#[tokio::test]
async fn client_credentials_grant_has_no_refresh_token() {
    let zoom = Zoom::start().await;
    let a = zoom.token(&[("grant_type", "client_credentials")]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.get("refresh_token").is_none());
    assert_eq!(a.body["token_type"], "bearer");
    assert_eq!(a.body["expires_in"], 3599);
    let bad = zoom
        .token_as(CLIENT_ID, "wrong", &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(
        (bad.status, bad.body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    assert_eq!(
        zoom.control
            .stats()
            .await
            .unwrap()
            .client_credentials_grants,
        1
    );
}

#[tokio::test]
async fn revoke_kills_the_whole_grant_without_counting_stale_uses() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let t = zoom.connect(&user.id, None).await;
    let a = answer(
        zoom.http
            .post(format!("{}/oauth/revoke", zoom.url))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[("token", t.access.as_str())])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (a.status, a.body.clone()),
        (StatusCode::OK, json!({"status": "success"}))
    );

    let me = zoom.get("/v2/users/me", &t.access).await;
    assert_eq!(
        (me.status, me.body.clone()),
        (
            StatusCode::UNAUTHORIZED,
            json!({"code": 124, "message": "Invalid access token."})
        )
    );
    let r = zoom.refresh(&t.refresh).await;
    assert_eq!(
        r.body,
        json!({"reason": "Invalid Token!", "error": "invalid_grant"})
    );
    let stats = zoom.control.stats().await.unwrap();
    assert_eq!((stats.revocations, stats.stale_refresh_token_uses), (1, 0));
    assert_eq!(
        zoom.control
            .token_info(&t.refresh)
            .await
            .unwrap()
            .unwrap()
            .status,
        "revoked"
    );

    // Authorizing again starts a new grant.
    let again = zoom.connect(&user.id, None).await;
    assert_eq!(
        zoom.get("/v2/users/me", &again.access).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_revoked_client_credentials_token_dies_at_once_on_a_shifted_clock() {
    let zoom = Zoom::start().await;
    zoom.control
        .set_config(&SimConfig {
            clock_offset_s: Some(-3600),
            ..Default::default()
        })
        .await
        .unwrap();
    let a = zoom.token(&[("grant_type", "client_credentials")]).await;
    let token = a.body["access_token"].as_str().unwrap().to_owned();
    let revoked = zoom
        .http
        .post(format!("{}/oauth/revoke", zoom.url))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let me = zoom.get("/v2/users/me", &token).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED, "{}", me.body);
    assert_eq!(me.body["code"], 124);
}

#[tokio::test]
async fn deauthorized_grant_refuses_refresh_without_counting_stale_uses() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let t = zoom.connect(&user.id, None).await;
    zoom.control.deauthorize(&user.id, CLIENT_ID).await.unwrap();
    assert_eq!(
        zoom.refresh(&t.refresh).await.body["error"],
        "invalid_grant"
    );
    assert_eq!(zoom.get("/v2/users/me", &t.access).await.body["code"], 124);
    assert_eq!(
        zoom.control.stats().await.unwrap().stale_refresh_token_uses,
        0
    );
    // Deauthorizing twice: there is nothing left to deauthorize.
    assert!(zoom.control.deauthorize(&user.id, CLIENT_ID).await.is_err());
}

#[tokio::test]
async fn a_new_authorization_supersedes_the_previous_refresh_token() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let old = zoom.connect(&user.id, None).await;
    let new = zoom.connect(&user.id, None).await;
    assert_eq!(
        zoom.refresh(&old.refresh).await.body["error"],
        "invalid_grant"
    );
    assert_eq!(
        zoom.control
            .token_info(&old.refresh)
            .await
            .unwrap()
            .unwrap()
            .status,
        "superseded"
    );
    assert_eq!(zoom.refresh(&new.refresh).await.status, StatusCode::OK);
    let stats = zoom.control.stats().await.unwrap();
    assert_eq!(
        (
            stats.stale_refresh_token_uses,
            stats.superseded_refresh_token_uses
        ),
        (0, 1)
    );
}

/// One grant per (app, user): a new code exchange supersedes the user's earlier access
/// tokens as well as the refresh token (Zoom error 4741, "revoked by a newer
/// authorization"), so a stored grant older than the newest exchange is unusable.
#[tokio::test]
async fn a_new_authorization_supersedes_the_previous_access_tokens() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let old = zoom.connect(&user.id, None).await;
    let refreshed = tokens(&zoom.refresh(&old.refresh).await.body);
    assert_eq!(
        zoom.get("/v2/users/me", &refreshed.access).await.status,
        StatusCode::OK
    );
    let new = zoom.connect(&user.id, None).await;
    for stale in [&old.access, &refreshed.access] {
        let me = zoom.get("/v2/users/me", stale).await;
        assert_eq!(
            (me.status, me.body["code"].clone()),
            (StatusCode::UNAUTHORIZED, json!(4741))
        );
        assert_eq!(
            zoom.control
                .token_info(stale)
                .await
                .unwrap()
                .unwrap()
                .status,
            "superseded"
        );
    }
    assert_eq!(
        zoom.get("/v2/users/me", &new.access).await.status,
        StatusCode::OK
    );
    // Refreshing the newest grant keeps its access tokens valid (rotation is not a
    // new authorization).
    let next = tokens(&zoom.refresh(&new.refresh).await.body);
    assert_eq!(
        zoom.get("/v2/users/me", &new.access).await.status,
        StatusCode::OK
    );
    assert_eq!(
        zoom.get("/v2/users/me", &next.access).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn access_tokens_expire_after_access_token_ttl() {
    let zoom = Zoom::start().await;
    zoom.control
        .set_config(&SimConfig {
            access_token_ttl_s: Some(0),
            ..Default::default()
        })
        .await
        .unwrap();
    let user = zoom.user().await;
    let code = zoom.code(&user.id, None).await;
    let a = zoom.exchange(&code).await;
    assert_eq!(a.body["expires_in"], 0);
    let me = zoom.get("/v2/users/me", &tokens(&a.body).access).await;
    assert_eq!(
        (me.status, me.body.clone()),
        (
            StatusCode::UNAUTHORIZED,
            json!({"code": 124, "message": "Access token is expired."})
        )
    );
}

#[tokio::test]
async fn refresh_tokens_of_another_app_are_refused() {
    let zoom = Zoom::start().await;
    zoom.control
        .create_app(&SimApp {
            client_id: "other".into(),
            client_secret: "other-secret".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let user = zoom.user().await;
    let t = zoom.connect(&user.id, None).await;
    let a = zoom
        .token_as(
            "other",
            "other-secret",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &t.refresh),
            ],
        )
        .await;
    assert_eq!(a.body["error"], "invalid_grant");
    assert_eq!(zoom.refresh(&t.refresh).await.status, StatusCode::OK);
}
