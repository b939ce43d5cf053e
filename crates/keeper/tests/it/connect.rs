//! Hosted connect (DESIGN.md §12) on SQLite and PostgreSQL against the Zoom
//! simulator: an HTTP client walks the whole flow as a browser would — the landing
//! page, its button, Zoom's consent page (the simulator's works without
//! JavaScript), zoomkeeper's callback, and the customer's return_url — following
//! each redirect by hand so every hop is checked. Every refusal has its own test.

use std::time::Duration;

use keeper::config::Settings;
use reqwest::Method;
use serde_json::{json, Value};
use testkit::{on_both_databases, spawn_app_with, Answer, Backend, Receiver, TestApp};
use zoom_sim::{SimApp, SimUser, SimUserStatus};

on_both_databases!(
    a_user_connects_through_the_hosted_flow,
    an_expired_session_is_refused,
    a_used_session_is_refused_and_its_connection_kept,
    a_state_never_issued_is_refused,
    only_the_newest_state_of_a_session_counts,
    declining_at_zoom_is_refused,
    a_code_zoom_rejects_is_refused,
    missing_scopes_are_refused,
    an_inactive_user_is_refused,
    return_urls_and_fields_are_checked_at_creation,
    racing_callbacks_use_a_session_once,
);

/// The customer's return_url: a page on 127.0.0.1 that records each query string.
async fn customer_page() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::extract::RawQuery;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let router = axum::Router::new().route(
        "/done",
        axum::routing::get(move |RawQuery(query): RawQuery| async move {
            record.lock().expect("lock").push(query.unwrap_or_default());
            axum::response::Html(
                "<!doctype html><title>Customer</title><p id=\"received\">Connected</p>",
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/done", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, seen)
}

/// A person clicks through the whole flow in headless Chromium; a screenshot of each
/// page is saved under target/test-output/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_connects_in_a_real_browser() {
    let Some(mut browser) = testkit::browser::Browser::start().await else {
        return;
    };
    let Some(app) = service(Backend::Sqlite).await else {
        return;
    };
    let someone = user(&app, None).await;
    let (return_url, seen) = customer_page().await;
    let s = new_session(
        &app,
        json!({"return_url": return_url, "metadata": {"plan": "pro"}, "is_onbehalf_token_supported": true}),
    )
    .await;
    let link = s["url"].as_str().expect("url").to_owned();

    browser.goto(&link).await;
    let landing = browser.text("main").await;
    assert!(landing.contains("Connect your Zoom account"), "{landing}");
    assert!(
        landing.contains("join meetings on your behalf"),
        "{landing}"
    );
    browser.screenshot("landing").await;
    browser.click("#continue").await;
    // At Zoom's consent page (once the click's navigation has landed).
    browser.wait_for_text("body", CLIENT).await;
    browser.screenshot("zoom-consent").await;
    browser
        .click(&format!(
            "form:has(input[name=user_id][value=\"{someone}\"]) button[value=approve]"
        ))
        .await;
    assert_eq!(browser.text("#received").await, "Connected");
    browser.screenshot("returned").await;
    let landed = browser.current_url().await;
    let q: std::collections::HashMap<String, String> = landed.query_pairs().into_owned().collect();
    assert_eq!(q["session_id"], s["id"].as_str().expect("id"));
    let connection = app.connection(&q["zoom_oauth_connection_id"]).await;
    assert_eq!(connection["user_id"], someone.as_str());
    assert_eq!(connection["metadata"], json!({"plan": "pro"}));
    assert_eq!(seen.lock().expect("lock").len(), 1);

    // The link again: a clear page, and a way back that tells the customer why.
    browser.goto(&link).await;
    let used = browser.text("main").await;
    assert!(used.contains("already used"), "{used}");
    browser.screenshot("link-used").await;
    browser.click("#back").await;
    assert_eq!(browser.text("#received").await, "Connected");
    let back = browser.current_url().await;
    assert!(back.as_str().contains("error=session_used"), "{back}");
    browser.close().await;
}

const CLIENT: &str = "connect-client";
const RETURN_URL: &str = "https://app.example.com/zoom/done?step=2";

async fn service(backend: Backend) -> Option<TestApp> {
    let app = spawn_app_with(
        backend,
        Settings {
            allow_private_callback_urls: Some(true),
            ..Settings::default()
        },
    )
    .await?;
    app.new_app(CLIENT).await;
    // Zoom's allow list: zoomkeeper's callback, and the test kit's for connections
    // made through the API.
    app.sim
        .control()
        .create_app(&SimApp {
            client_id: CLIENT.into(),
            client_secret: format!("secret-of-{CLIENT}"),
            redirect_uris: Some(vec![
                app.url("/connect/zoom/callback"),
                testkit::REDIRECT_URI.to_owned(),
            ]),
            // What both capabilities need.
            scopes: Some(
                zoom_sim::LOCAL_RECORDING_SCOPES
                    .iter()
                    .chain(zoom_sim::ONBEHALF_SCOPES)
                    .map(|s| s.to_string())
                    .collect(),
            ),
            ..Default::default()
        })
        .await
        .expect("sim app");
    Some(app)
}

async fn user(app: &TestApp, status: Option<SimUserStatus>) -> String {
    app.sim
        .control()
        .create_user(&SimUser {
            status,
            ..SimUser::default()
        })
        .await
        .expect("sim user")
        .id
}

async fn session(app: &TestApp, body: Value) -> Answer {
    app.send(
        app.request(Method::POST, "/api/v1/zoom_oauth_connect_sessions")
            .json(&body),
    )
    .await
}

async fn new_session(app: &TestApp, body: Value) -> Value {
    let a = session(app, body).await;
    assert_eq!(a.status, 201, "{}", a.text);
    a.json
}

async fn session_status(app: &TestApp, id: &str) -> Value {
    app.send(app.request(
        Method::GET,
        &format!("/api/v1/zoom_oauth_connect_sessions/{id}"),
    ))
    .await
    .json
}

/// A browser that does not follow redirects by itself.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

struct Hop {
    status: u16,
    location: Option<String>,
    body: String,
    headers: reqwest::header::HeaderMap,
}

async fn hop(request: reqwest::RequestBuilder) -> Hop {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let location = headers
        .get("location")
        .map(|l| l.to_str().expect("location").to_owned());
    Hop {
        status,
        location,
        body: response.text().await.expect("body"),
        headers,
    }
}

/// The hidden fields of the consent page's form that signs in as `user_id`, or of
/// the Decline form.
fn consent_form(page: &str, user_id: Option<&str>) -> Vec<(String, String)> {
    let form = page
        .split("<form")
        .skip(1)
        .find(|f| match user_id {
            Some(u) => f.contains(&format!("value=\"{u}\"")),
            None => f.contains("value=\"deny\""),
        })
        .expect("the form on the consent page");
    let mut fields: Vec<(String, String)> = form
        .split("<input")
        .skip(1)
        .filter_map(|input| {
            let attr = |name: &str| {
                let start = input.find(&format!("{name}=\""))? + name.len() + 2;
                let end = input[start..].find('"')? + start;
                Some(input[start..end].replace("&amp;", "&"))
            };
            Some((attr("name")?, attr("value")?))
        })
        .collect();
    fields.push((
        "decision".to_owned(),
        if user_id.is_some() { "approve" } else { "deny" }.to_owned(),
    ));
    fields
}

/// Opens the link and presses "Continue to Zoom": Zoom's authorize URL.
async fn to_zoom(link: &str) -> String {
    let b = browser();
    let landing = hop(b.get(link)).await;
    assert_eq!(landing.status, 200, "{}", landing.body);
    let pressed = hop(b.post(link)).await;
    assert_eq!(pressed.status, 303, "{}", pressed.body);
    pressed.location.expect("to Zoom")
}

/// Signs in at the simulated Zoom as `user` (or declines): zoomkeeper's callback URL.
async fn at_zoom(authorize_url: &str, user: Option<&str>) -> String {
    let b = browser();
    let consent = hop(b.get(authorize_url)).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    let form = consent_form(&consent.body, user);
    let origin = url::Url::parse(authorize_url).expect("url");
    let submitted = hop(b
        .post(origin.join("/oauth/authorize").expect("url"))
        .form(&form))
    .await;
    assert!((300..400).contains(&submitted.status), "{}", submitted.body);
    submitted.location.expect("back to zoomkeeper")
}

/// The whole flow for `user`: where zoomkeeper finally sends the browser.
async fn connect(link: &str, user: Option<&str>) -> Hop {
    let callback = at_zoom(&to_zoom(link).await, user).await;
    hop(browser().get(&callback)).await
}

fn query(location: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(location)
        .expect("url")
        .query_pairs()
        .into_owned()
        .collect()
}

/// Asserts the browser went back to the customer with `error`.
fn returned_with_error(h: &Hop, error: &str, session_id: &str) {
    assert_eq!(h.status, 303, "{}", h.body);
    let location = h.location.as_deref().expect("redirect");
    assert!(
        location.starts_with("https://app.example.com/zoom/done?step=2&"),
        "{location}"
    );
    let q = query(location);
    assert_eq!(q["error"], error, "{location}");
    assert!(!q["error_description"].is_empty());
    assert_eq!(q["session_id"], session_id);
    assert!(!q.contains_key("zoom_oauth_connection_id"));
}

async fn a_user_connects_through_the_hosted_flow(backend: Backend) {
    let Some(app) = service(backend).await else {
        return;
    };
    let receiver = Receiver::start(200).await;
    let sub = app
        .send(app.request(Method::POST, "/api/v1/webhooks").json(
            &json!({"url": receiver.url(), "triggers": ["zoom_oauth_connection.state_change"]}),
        ))
        .await;
    assert_eq!(sub.status, 201, "{}", sub.text);
    let zoa = app.get_app(&app.all_app_ids().await[0]).await;
    assert_eq!(
        zoa.json["connect_redirect_url"],
        app.url("/connect/zoom/callback")
    );
    let someone = user(&app, None).await;
    let s = new_session(
        &app,
        json!({
            "return_url": RETURN_URL,
            "metadata": {"team": "sales"},
            "deduplication_key": "customer-user-42",
            "is_onbehalf_token_supported": true,
        }),
    )
    .await;
    assert_eq!(s["status"], "pending");
    let link = s["url"].as_str().expect("url").to_owned();
    let id = s["id"].as_str().expect("id").to_owned();
    assert!(link.starts_with(&app.url("/connect/")));

    // The landing page: which project asks, what will be granted, one button; no
    // script, its own stylesheet, no referrer, no caching.
    let b = browser();
    let landing = hop(b.get(&link)).await;
    assert_eq!(landing.status, 200);
    assert!(landing.body.contains("Connect your Zoom account"));
    let project = app
        .keeper
        .store
        .project_by_id(&app.project_id)
        .await
        .expect("project")
        .expect("the test project");
    assert!(
        landing
            .body
            .contains(&format!("<strong>{}</strong> asks", project.name)),
        "names the project: {}",
        landing.body
    );
    assert!(landing.body.contains("join meetings on your behalf"));
    assert!(landing.body.contains("record your meetings locally"));
    assert!(!landing.body.contains("<script"));
    assert_eq!(landing.headers["referrer-policy"], "no-referrer");
    assert_eq!(landing.headers["cache-control"], "no-store");
    let csp = landing.headers["content-security-policy"]
        .to_str()
        .expect("csp");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("style-src 'self'"),
        "{csp}"
    );
    let css = hop(b.get(app.url("/connect/static/connect.css"))).await;
    assert_eq!(css.status, 200);

    let authorize = to_zoom(&link).await;
    let params = query(&authorize);
    assert_eq!(params["client_id"], CLIENT);
    assert_eq!(params["redirect_uri"], app.url("/connect/zoom/callback"));
    assert_eq!(params["code_challenge_method"], "S256");
    assert!(params["state"].len() >= 40);
    let callback = at_zoom(&authorize, Some(&someone)).await;
    let back = hop(browser().get(&callback)).await;
    assert_eq!(back.status, 303, "{}", back.body);
    let location = back.location.expect("to the customer");
    assert!(
        location.starts_with("https://app.example.com/zoom/done?step=2&"),
        "{location}"
    );
    let q = query(&location);
    assert_eq!(q["session_id"], id);
    assert!(q.contains_key("zoom_oauth_connection_id"), "{location}");
    let connection = app.connection(&q["zoom_oauth_connection_id"]).await;
    assert_eq!(connection["user_id"], someone.as_str());
    assert_eq!(connection["state"], "connected");
    assert_eq!(connection["metadata"], json!({"team": "sales"}));
    assert_eq!(connection["deduplication_key"], "customer-user-42");
    assert_eq!(connection["is_onbehalf_token_supported"], true);
    let status = session_status(&app, &id).await;
    assert_eq!(status["status"], "completed");
    assert_eq!(
        status["zoom_oauth_connection_id"],
        q["zoom_oauth_connection_id"].as_str()
    );
    assert!(status.get("url").is_none(), "the link is shown once");

    // A customer who lost the redirect still hears of the new connection.
    keeper::webhook_delivery::run_once(&app.keeper)
        .await
        .expect("deliveries");
    let got = receiver
        .wait_for_exactly(1, Duration::from_millis(300))
        .await;
    assert_eq!(got[0].json["trigger"], "zoom_oauth_connection.state_change");
    assert_eq!(got[0].json["data"]["state"], "connected");
    assert_eq!(
        got[0].json["zoom_oauth_connection_id"],
        q["zoom_oauth_connection_id"].as_str()
    );

    // Neither the link's token, the state nor the code is in any log line.
    let logs = testkit::captured_logs();
    let token = link.rsplit('/').next().expect("token");
    assert!(!logs.contains(token));
    assert!(!logs.contains(&params["state"]));
    assert!(!logs.contains(&query(&callback)["code"]));
}

async fn an_expired_session_is_refused(backend: Backend) {
    let Some(app) = service(backend).await else {
        return;
    };
    let s = new_session(&app, json!({"return_url": RETURN_URL, "expires_in": 60})).await;
    let link = s["url"].as_str().expect("url");
    app.keeper.clock.advance(Duration::from_secs(61));
    for h in [
        hop(browser().get(link)).await,
        hop(browser().post(link)).await,
    ] {
        assert_eq!(h.status, 410, "{}", h.body);
        assert!(h.body.contains("This link has expired"), "{}", h.body);
        assert!(
            h.body.contains("error=session_expired"),
            "a way back: {}",
            h.body
        );
    }
    assert_eq!(
        session_status(&app, s["id"].as_str().expect("id")).await["status"],
        "expired"
    );
}

async fn a_used_session_is_refused_and_its_connection_kept(backend: Backend) {
    let Some(app) = service(backend).await else {
        return;
    };
    let someone = user(&app, None).await;
    let s = new_session(&app, json!({"return_url": RETURN_URL})).await;
    let link = s["url"].as_str().expect("url");
    let id = s["id"].as_str().expect("id");
    let callback = at_zoom(&to_zoom(link).await, Some(&someone)).await;
    let first = hop(browser().get(&callback)).await;
    let connection_id =
        query(first.location.as_deref().expect("back"))["zoom_oauth_connection_id"].clone();
    let before = app.connection(&connection_id).await;

    // The same callback again (a reload, or a stolen URL): refused.
    returned_with_error(&hop(browser().get(&callback)).await, "session_used", id);
    // The link once more.
    let again = hop(browser().get(link)).await;
    assert_eq!(again.status, 410);
    assert!(again.body.contains("already used"), "{}", again.body);
    assert_eq!(app.connection(&connection_id).await, before, "untouched");
    assert_eq!(session_status(&app, id).await["status"], "completed");
}

async fn a_state_never_issued_is_refused(backend: Backend) {
    let Some(app) = service(backend).await else {
        return;
    };
    for query in ["state=made-up&code=abc", "code=abc", "error=access_denied"] {
        let h = hop(browser().get(app.url(&format!("/connect/zoom/callback?{query}")))).await;
        assert_eq!(h.status, 404, "{query}: {}", h.body);
        assert!(h.location.is_none(), "no redirect anywhere");
        assert!(h.body.contains("did not start here"), "{}", h.body);
        assert!(!h.body.contains("abc"));
    }
    let h = hop(browser().get(app.url("/connect/not-a-token"))).await;
    assert_eq!(h.status, 404);
    assert!(h.body.contains("This link is not valid"));
}

async fn only_the_newest_state_of_a_session_counts(backend: Backend) {
    let Some(app) = service(backend).await else {
        return;
    };
    let someone = user(&app, None).await;
    let s = new_session(&app, json!({"return_url": RETURN_URL})).await;
    let link = s["url"].as_str().expect("url");
    // Pressed twice (two tabs): the first redirect's state no longer counts.
    let first = to_zoom(link).await;
    let second = to_zoom(link).await;
    assert_ne!(query(&first)["state"], query(&second)["state"]);
    let stale = at_zoom(&first, Some(&someone)).await;
    let h = hop(browser().get(&stale)).await;
    assert_eq!(h.status, 404, "{}", h.body);
    assert!(h.body.contains("replaced by a newer one"), "{}", h.body);
    // The newest one still works.
    let fresh = at_zoom(&second, Some(&someone)).await;
    let h = hop(browser().get(&fresh)).await;
    assert!(query(h.location.as_deref().expect("back")).contains_key("zoom_oauth_connection_id"));
}

async fn declining_at_zoom_is_refused(backend: Backend) {
    let Some(app) = service(backend).await else {
        return;
    };
    let someone = user(&app, None).await;
    let (_, existing) = app.connect(CLIENT, json!({})).await;
    let existing_id = existing.json["id"].as_str().expect("id").to_owned();
    let before = app.connection(&existing_id).await;
    let s = new_session(&app, json!({"return_url": RETURN_URL})).await;
    let h = connect(s["url"].as_str().expect("url"), None).await;
    let id = s["id"].as_str().expect("id");
    returned_with_error(&h, "access_denied", id);
    let status = session_status(&app, id).await;
    assert_eq!(status["status"], "failed");
    assert_eq!(status["error"], "access_denied");
    assert_eq!(app.connection(&existing_id).await, before);
    let _ = someone;
}

async fn a_code_zoom_rejects_is_refused(backend: Backend) {
    let Some(app) = service(backend).await else {
        return;
    };
    let someone = user(&app, None).await;
    let s = new_session(&app, json!({"return_url": RETURN_URL})).await;
    let callback = at_zoom(
        &to_zoom(s["url"].as_str().expect("url")).await,
        Some(&someone),
    )
    .await;
    let mut forged = url::Url::parse(&callback).expect("url");
    let state = query(&callback)["state"].clone();
    forged
        .query_pairs_mut()
        .clear()
        .append_pair("code", "not-a-code-zoom-issued")
        .append_pair("state", &state);
    let h = hop(browser().get(forged.as_str())).await;
    returned_with_error(
        &h,
        "authorization_code_rejected",
        s["id"].as_str().expect("id"),
    );
    assert!(!h.location.expect("back").contains("not-a-code-zoom-issued"));
    let all = app
        .send(app.request(Method::GET, "/api/v1/zoom_oauth_connections"))
        .await;
    assert_eq!(all.json["results"], json!([]), "nothing was connected");
}

async fn missing_scopes_are_refused(backend: Backend) {
    let Some(app) = service(backend).await else {
        return;
    };
    app.sim
        .control()
        .create_app(&SimApp {
            client_id: CLIENT.into(),
            client_secret: format!("secret-of-{CLIENT}"),
            scopes: Some(vec!["user:read:user".to_owned()]),
            redirect_uris: Some(vec![app.url("/connect/zoom/callback")]),
            ..Default::default()
        })
        .await
        .expect("sim app");
    let someone = user(&app, None).await;
    let s = new_session(&app, json!({"return_url": RETURN_URL})).await;
    let h = connect(s["url"].as_str().expect("url"), Some(&someone)).await;
    returned_with_error(&h, "missing_scopes", s["id"].as_str().expect("id"));
}

async fn an_inactive_user_is_refused(backend: Backend) {
    let Some(app) = service(backend).await else {
        return;
    };
    let someone = user(&app, Some(SimUserStatus::Inactive)).await;
    let s = new_session(&app, json!({"return_url": RETURN_URL})).await;
    let h = connect(s["url"].as_str().expect("url"), Some(&someone)).await;
    returned_with_error(&h, "zoom_user_not_active", s["id"].as_str().expect("id"));
}

async fn return_urls_and_fields_are_checked_at_creation(backend: Backend) {
    let Some(app) = service(backend).await else {
        return;
    };
    for (body, field) in [
        (json!({"return_url": "ftp://example.com/x"}), "return_url"),
        (json!({"return_url": "javascript:alert(1)"}), "return_url"),
        (json!({"return_url": "not a url"}), "return_url"),
        (json!({"return_url": "/relative"}), "return_url"),
        (
            json!({"return_url": "https://user:pw@example.com/"}),
            "return_url",
        ),
        (
            json!({"return_url": "https://example.com/#frag"}),
            "return_url",
        ),
        (
            json!({"return_url": format!("https://example.com/{}", "a".repeat(3000))}),
            "return_url",
        ),
        (
            json!({"return_url": RETURN_URL, "expires_in": 5}),
            "expires_in",
        ),
        (
            json!({"return_url": RETURN_URL, "metadata": {"a": 1}}),
            "metadata",
        ),
        (
            json!({"return_url": RETURN_URL, "zoom_oauth_app_id": "zoa_0000000000000000"}),
            "zoom_oauth_app_id",
        ),
        (
            json!({"return_url": RETURN_URL, "is_local_recording_token_supported": false}),
            "is_local_recording_token_supported",
        ),
    ] {
        let a = session(&app, body.clone()).await;
        a.assert_error(400, "invalid_request");
        assert!(!a.field_problems(field).is_empty(), "{body}: {}", a.text);
    }
    let a = session(&app, json!({"return_url": RETURN_URL, "extra": true})).await;
    assert_eq!(a.status, 400);
    app.send(app.request(
        Method::GET,
        "/api/v1/zoom_oauth_connect_sessions/zcs_0000000000000000",
    ))
    .await
    .assert_error(404, "not_found");
}

/// Zoom's redirect arriving twice at once (a double submit, a retrying proxy): one
/// connects, the other is told the session was used.
async fn racing_callbacks_use_a_session_once(backend: Backend) {
    let Some(app) = service(backend).await else {
        return;
    };
    let someone = user(&app, None).await;
    let s = new_session(&app, json!({"return_url": RETURN_URL})).await;
    let callback = at_zoom(
        &to_zoom(s["url"].as_str().expect("url")).await,
        Some(&someone),
    )
    .await;
    let b = browser();
    let (x, y) = tokio::join!(hop(b.get(&callback)), hop(b.get(&callback)));
    let outcomes: Vec<std::collections::HashMap<String, String>> = [x, y]
        .iter()
        .map(|h| query(h.location.as_deref().expect("redirect")))
        .collect();
    let connected = outcomes
        .iter()
        .filter(|q| q.contains_key("zoom_oauth_connection_id"))
        .count();
    let used = outcomes
        .iter()
        .filter(|q| q.get("error").map(String::as_str) == Some("session_used"))
        .count();
    assert_eq!((connected, used), (1, 1), "{outcomes:?}");
    let status = session_status(&app, s["id"].as_str().expect("id")).await;
    assert_eq!(status["status"], "completed");
}
