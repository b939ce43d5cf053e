//! Attendee's exact answers where its clients parse them (issue 18). Each vector is
//! the bytes Attendee sends, read from attendee-labs/attendee at commit 77e990ed:
//! - `bots/authentication.py` lines 8–30 (`ApiKeyAuthentication`): the three 401
//!   sentences under `detail`, and `WWW-Authenticate: Token`;
//! - `bots/zoom_oauth_connections_api_views.py` lines 159–160 and 186–187: GET and
//!   DELETE of an unknown (or another project's) connection answer 404
//!   `{"error":"Zoom OAuth Connection not found"}`.
//!
//! zoomkeeper keeps its own `error` and `code` beside them.

use reqwest::Method;
use testkit::{on_both_databases, spawn_app, Backend};

on_both_databases!(
    the_401s_carry_attendees_detail_and_scheme,
    an_unknown_connection_is_attendees_404,
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
