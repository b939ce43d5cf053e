//! Attendee's exact answers where its clients parse them (issue 18). Each vector is
//! the bytes Attendee sends, read from attendee-labs/attendee at commit 77e990ed:
//! - `bots/authentication.py` lines 8–30 (`ApiKeyAuthentication`): the three 401
//!   sentences under `detail`, and `WWW-Authenticate: Token`;
//! - `bots/zoom_oauth_connections_api_views.py` lines 159–160 and 186–187: GET and
//!   DELETE of an unknown (or another project's) connection answer 404
//!   `{"error":"Zoom OAuth Connection not found"}`;
//! - `bots/zoom_oauth_connections_api_utils.py` lines 57–107: the sentences a create
//!   answers when the app is unknown or missing, the code exchange fails, scopes are
//!   missing or the user is not active (zoomkeeper adds what to do after them), and
//!   `bots/serializers.py`' DRF field message "This field is required.".
//!
//! zoomkeeper keeps its own `error` and `code` beside them.

use reqwest::Method;
use serde_json::json;
use testkit::{on_both_databases, spawn_app, Backend, REDIRECT_URI};

on_both_databases!(
    the_401s_carry_attendees_detail_and_scheme,
    an_unknown_connection_is_attendees_404,
    a_refused_create_reads_as_attendees,
);

const CONNECTIONS: &str = "/api/v1/zoom_oauth_connections";

async fn the_401s_carry_attendees_detail_and_scheme(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let forged = format!("Token zk_{}", "A".repeat(43));
    for (header, detail) in [
        (None, "Missing Authorization header"),
        (
            Some("Bearer abc"),
            "Invalid Authorization header. Should have this format: Token <api_key>",
        ),
        (Some(forged.as_str()), "Invalid or disabled API key"),
    ] {
        let mut request = app.http.get(app.url(CONNECTIONS));
        if let Some(h) = header {
            request = request.header("authorization", h);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), 401);
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Token")
        );
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["detail"], detail, "{body}");
        assert_eq!(body["error"], detail, "{body}");
    }
}

async fn an_unknown_connection_is_attendees_404(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // Never made, malformed, and another project's.
    let (_, other_key) = app.other_project("other").await;
    app.new_app("compat-client").await;
    let (_, theirs) = app.connect("compat-client", serde_json::json!({})).await;
    let theirs = theirs.json["id"].as_str().expect("id").to_owned();
    for id in ["zoc_AAAAAAAAAAAAAAAA", "nope", theirs.as_str()] {
        for method in [Method::GET, Method::DELETE] {
            let a = app
                .send(
                    app.http
                        .request(method.clone(), app.url(&format!("{CONNECTIONS}/{id}")))
                        .header("authorization", format!("Token {other_key}")),
                )
                .await;
            assert_eq!(a.status, 404, "{method} {id}: {}", a.text);
            assert_eq!(
                a.json["error"], "Zoom OAuth Connection not found",
                "{}",
                a.text
            );
        }
    }
    // The owner still has it.
    assert_eq!(app.connection(&theirs).await["id"], theirs.as_str());
}

async fn a_refused_create_reads_as_attendees(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let sentence = |a: &testkit::Answer| a.json["error"].as_str().unwrap_or_default().to_owned();

    // No app in the project yet (utils 64–66).
    let code = json!({"authorization_code": "abc", "redirect_uri": REDIRECT_URI});
    let a = app.create_connection(code.clone()).await;
    a.assert_error(400, "invalid_request");
    assert!(
        a.field_problems("zoom_oauth_app_id")[0].starts_with(
            "No Zoom OAuth App found in this project. Please add a Zoom OAuth App first"
        ),
        "{}",
        a.text
    );

    // An app id the project does not have (utils 57–62).
    let zoom_app = app.new_app("compat-client").await;
    let a = app
        .create_connection(json!({"authorization_code": "abc", "redirect_uri": REDIRECT_URI, "zoom_oauth_app_id": "zoa_0000000000000000"}))
        .await;
    a.assert_error(400, "invalid_request");
    assert_eq!(
        a.field_problems("zoom_oauth_app_id"),
        ["Zoom OAuth App with id zoa_0000000000000000 does not exist in this project."]
    );

    // A required field left out (DRF).
    let a = app
        .create_connection(json!({"redirect_uri": REDIRECT_URI}))
        .await;
    a.assert_error(400, "invalid_request");
    assert_eq!(
        a.field_problems("authorization_code"),
        ["This field is required."]
    );

    // The code exchange fails (utils 69–79).
    let a = app
        .create_connection(
            json!({"authorization_code": "not-a-real-code", "redirect_uri": REDIRECT_URI}),
        )
        .await;
    a.assert_error(400, "authorization_code_rejected");
    assert!(
        sentence(&a).starts_with("Error exchanging access code for tokens. Please check that the authorization code and redirect URI are correct."),
        "{}",
        a.text
    );

    // Scopes missing (utils 82–95): Attendee's list is a Python repr.
    let user = app.zoom_user(None).await;
    let code = app
        .auth_code(
            "compat-client",
            &user,
            Some(vec!["user:read:user".to_owned()]),
        )
        .await;
    let a = app
        .create_connection(json!({"authorization_code": code, "redirect_uri": REDIRECT_URI}))
        .await;
    a.assert_error(400, "missing_scopes");
    assert!(
        sentence(&a).starts_with("The authorization is missing the following required scopes: ['meeting:read:list_meetings', 'meeting:read:local_recording_token', 'user:read:zak']."),
        "{}",
        a.text
    );

    // The user is not active (utils 106–107).
    let inactive = app.zoom_user(Some(zoom_sim::SimUserStatus::Inactive)).await;
    let a = app
        .connect_user("compat-client", &inactive, json!({}))
        .await;
    a.assert_error(400, "zoom_user_not_active");
    assert!(
        sentence(&a).starts_with("The user is not active."),
        "{}",
        a.text
    );
    // None of the refused creates stored a connection.
    let id = zoom_app["id"].as_str().expect("app id");
    let now = app
        .send(app.request(Method::GET, &format!("/api/v1/zoom_oauth_apps/{id}")))
        .await;
    assert_eq!(now.status, 200, "{}", now.text);
    assert_eq!(now.json["connection_count"], 0, "{}", now.text);
}
