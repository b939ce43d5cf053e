//! The `/oauth/authorize` consent page, driven like a browser would (GET, then POST the
//! form), and the control API's handling of bad input.

use std::collections::HashMap;

use crate::common::*;
use axum::http::StatusCode;
use zoom_sim::*;

/// The hidden inputs of the form that approves as `user_id`, as a browser would send them.
fn form_for(html: &str, user_id: &str) -> Vec<(String, String)> {
    let form = html
        .split("<form")
        .find(|f| f.contains(&format!("name=\"user_id\" value=\"{user_id}\"")))
        .expect("a form for the user");
    let mut fields: Vec<(String, String)> = form
        .split("<input ")
        .skip(1)
        .map(|input| {
            let attr = |name: &str| {
                let start = input.find(&format!("{name}=\"")).expect("attribute") + name.len() + 2;
                let end = start + input[start..].find('"').expect("closing quote");
                input[start..end]
                    .replace("&amp;", "&")
                    .replace("&quot;", "\"")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&#39;", "'")
            };
            (attr("name"), attr("value"))
        })
        .collect();
    fields.push(("decision".into(), "approve".into()));
    fields
}

#[tokio::test]
async fn approving_on_the_page_redirects_with_code_and_state() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    let _other = zoom.user().await;
    let verifier = "a-verifier-of-forty-three-characters-at-least";
    let state = "st<&\"ate>";
    let mut page_url = url::Url::parse(&format!("{}/oauth/authorize", zoom.url)).unwrap();
    page_url
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("state", state)
        .append_pair("code_challenge", &pkce_challenge(verifier))
        .append_pair("code_challenge_method", "S256");
    let page = zoom.http.get(page_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&user.email) && !html.contains(state),
        "state is escaped in the page"
    );

    let resp = zoom
        .http
        .post(format!("{}/oauth/authorize", zoom.url))
        .form(&form_for(&html, &user.id))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let location = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(REDIRECT_URI));
    let q: HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(q["state"], state);

    let a = zoom
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier),
        ])
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let me = zoom
        .get("/v2/users/me", a.body["access_token"].as_str().unwrap())
        .await;
    assert_eq!(me.body["id"], user.id);
}

#[tokio::test]
async fn declining_redirects_with_access_denied() {
    let zoom = Zoom::start().await;
    zoom.user().await;
    let resp = zoom
        .http
        .post(format!("{}/oauth/authorize", zoom.url))
        .form(&[
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT_URI),
            ("state", "s1"),
            ("decision", "deny"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.contains("error=access_denied") && location.contains("state=s1"),
        "{location}"
    );
}

#[tokio::test]
async fn unknown_client_or_bad_request_is_an_error_page() {
    let zoom = Zoom::start().await;
    for query in [
        format!("response_type=code&client_id=nope&redirect_uri={REDIRECT_URI}"),
        format!("response_type=token&client_id={CLIENT_ID}&redirect_uri={REDIRECT_URI}"),
        format!("response_type=code&client_id={CLIENT_ID}"),
        format!("response_type=code&client_id={CLIENT_ID}&redirect_uri={REDIRECT_URI}&code_challenge=x&code_challenge_method=plain"),
    ] {
        let resp = zoom.http.get(format!("{}/oauth/authorize?{query}", zoom.url)).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{query}");
        assert!(resp.text().await.unwrap().contains("<html>"));
    }
}

#[tokio::test]
async fn redirect_uris_allow_list_is_enforced_when_set() {
    let zoom = Zoom::start().await;
    zoom.control
        .update_app(
            CLIENT_ID,
            &SimAppPatch {
                redirect_uris: Some(vec![REDIRECT_URI.into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let user = zoom.user().await;
    let other = format!("{}/oauth/authorize?response_type=code&client_id={CLIENT_ID}&redirect_uri=https://evil.example/cb", zoom.url);
    assert_eq!(zoom.http.get(other).send().await.unwrap().status(), 400);
    let denied = zoom
        .control
        .authorize(&SimAuthorize {
            client_id: CLIENT_ID.into(),
            user_id: user.id.clone(),
            redirect_uri: "https://evil.example/cb".into(),
            ..Default::default()
        })
        .await;
    assert!(denied.is_err());
}

#[tokio::test]
async fn malformed_control_requests_get_4xx_json() {
    let zoom = Zoom::start().await;
    let post = |path: &str, body: &'static str| {
        zoom.http
            .post(format!("{}{path}", zoom.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (path, body, status) in [
        ("/_sim/apps", "{not json", 400),
        ("/_sim/apps", "{\"client_id\": 5}", 400),
        ("/_sim/apps", "{}", 400),
        ("/_sim/users", "{\"pmi\": \"abc\"}", 400),
        ("/_sim/users", "{\"pmi\": 12}", 400),
        ("/_sim/users", "{\"surprise\": true}", 400),
        (
            "/_sim/authorize",
            "{\"client_id\": \"nope\", \"user_id\": \"x\", \"redirect_uri\": \"https://a/b\"}",
            404,
        ),
        ("/_sim/users/nobody/meetings", "{}", 404),
        (
            "/_sim/users/nobody/deauthorize",
            "{\"client_id\": \"x\"}",
            404,
        ),
    ] {
        let a = answer(post(path, body).await.unwrap()).await;
        assert_eq!(a.status.as_u16(), status, "{path} {body}: {}", a.body);
        assert!(a.body["error"].is_string(), "{path} {body}: {}", a.body);
    }
    let del = answer(
        zoom.http
            .delete(format!("{}/_sim/meetings/not-a-number", zoom.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(del.status, StatusCode::NOT_FOUND);
    let cfg = answer(
        zoom.http
            .put(format!("{}/_sim/config", zoom.url))
            .body("{\"webhook_retry_scale\": -1}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(cfg.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn users_can_be_created_with_chosen_ids_and_duplicates_are_refused() {
    let zoom = Zoom::start().await;
    let u = zoom
        .control
        .create_user(&SimUser {
            id: Some("u-1".into()),
            email: Some("a@b.c".into()),
            pmi: Some(1_234_567_890),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (u.id.as_str(), u.email.as_str(), u.pmi),
        ("u-1", "a@b.c", 1_234_567_890)
    );
    assert_eq!(u.role, SimUserRole::Owner);
    assert!(zoom
        .control
        .create_user(&SimUser {
            id: Some("u-1".into()),
            ..Default::default()
        })
        .await
        .is_err());
    assert!(zoom
        .control
        .create_user(&SimUser {
            pmi: Some(1_234_567_890),
            ..Default::default()
        })
        .await
        .is_err());
}

#[tokio::test]
async fn reset_forgets_everything_and_shutdown_stops_serving() {
    let zoom = Zoom::start().await;
    zoom.user().await;
    zoom.token(&[("grant_type", "client_credentials")]).await;
    zoom.control.reset().await.unwrap();
    assert!(zoom.control.users().await.unwrap().is_empty());
    assert_eq!(zoom.control.stats().await.unwrap(), SimStats::default());
    assert_eq!(
        zoom.control.config().await.unwrap().access_token_ttl_s,
        Some(3599)
    );

    let Zoom { sim, control, .. } = zoom;
    assert!(sim.url().starts_with("http://127.0.0.1:"));
    assert_eq!(sim.url(), format!("http://{}", sim.addr()));
    sim.shutdown().await;
    assert!(control.stats().await.is_err());
}

#[tokio::test]
async fn absurd_config_and_meeting_times_are_refused_and_never_panic_the_simulator() {
    let zoom = Zoom::start().await;
    let user = zoom.user().await;
    for body in [
        r#"{"clock_offset_s": 9223372036854775807}"#,
        r#"{"clock_offset_s": -9223372036854775808}"#,
        r#"{"code_ttl_s": 18446744073709551615}"#,
        r#"{"access_token_ttl_s": 18446744073709551615}"#,
        r#"{"refresh_token_ttl_s": 9223372036854775808}"#,
    ] {
        let a = answer(
            zoom.http
                .put(format!("{}/_sim/config", zoom.url))
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.body);
        assert!(a.body["error"].is_string(), "{body}: {}", a.body);
    }
    // A meeting at the end of time, then every path that does time math on it.
    let far = answer(
        zoom.http
            .post(format!("{}/_sim/users/{}/meetings", zoom.url, user.id))
            .body(r#"{"start_time": "+262000-01-01T00:00:00Z", "duration": 4294967295}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(far.status.is_client_error(), "{}", far.body);
    let tokens = zoom.connect(&user.id, None).await;
    for list in ["upcoming", "live", "previous_meetings", "scheduled"] {
        let a = zoom
            .get(
                &format!("/v2/users/me/meetings?type={list}"),
                &tokens.access,
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{list}: {}", a.body);
    }
    // The simulator still works after all of it.
    assert_eq!(zoom.get("/v2/users/me", &tokens.access).await.status, 200);
}
