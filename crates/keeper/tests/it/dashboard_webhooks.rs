//! The dashboard's outgoing webhooks, bot platforms and connect links (DESIGN.md
//! §13), over plain HTTP as a browser without JavaScript uses them, on both
//! databases. What a page shows is checked against what the API says.

use std::time::{Duration, Instant};

use keeper::config::Settings;
use reqwest::Method;
use serde_json::{json, Value};
use testkit::dashboard::Dashboard;
use testkit::{on_both_databases, spawn_app_with, Answer, Backend, Receiver, TestApp};
use zoom_sim::{SimApp, SimConfig, SimUser};

on_both_databases!(
    webhook_subscriptions_are_made_edited_and_deleted_with_the_apis_sentences,
    a_delivery_is_listed_with_its_status_and_resent,
    the_signing_secret_is_shown_only_when_asked_and_rotated,
    bot_platforms_are_made_edited_and_deleted_with_the_apis_sentences,
    a_recall_platform_shows_its_token_once_and_its_calls,
    connect_links_are_shown_once_and_followed_to_completion,
    connect_link_input_is_refused_next_to_its_field,
    another_projects_ids_are_not_found,
);

const CLIENT: &str = "dash-client";
const TRIGGER: &str = "zoom_oauth_connection.state_change";
/// Bytes 0..31, as Attendee shows a project's webhook secret.
const ATTENDEE_SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A service that may call local receivers (the delivery worker is driven by the
/// tests), with an app registered at the simulated Zoom, whose allow list has
/// zoomkeeper's hosted-connect callback and the test kit's redirect URL.
async fn service(backend: Backend) -> Option<TestApp> {
    let app = spawn_app_with(
        backend,
        Settings {
            allow_private_callback_urls: Some(true),
            rate_limit_per_second: Some(1000.0),
            rate_limit_burst: Some(1000),
            ..Settings::default()
        },
    )
    .await?;
    app.new_app(CLIENT).await;
    app.sim
        .control()
        .create_app(&SimApp {
            client_id: CLIENT.into(),
            client_secret: format!("secret-of-{CLIENT}"),
            redirect_uris: Some(vec![
                app.url("/connect/zoom/callback"),
                testkit::REDIRECT_URI.to_owned(),
            ]),
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

/// The page as a browser gets it: 200, and nothing the CSP would refuse.
async fn page(dashboard: &Dashboard<'_>, path: &str) -> String {
    let a = dashboard.get(path).await;
    assert_eq!(a.status, 200, "{path}: {}", a.text);
    clean(&a);
    a.text
}

/// No `style=` attribute, no inline `<script>`, no `on…=` event attribute.
fn clean(a: &Answer) {
    let html = &a.text;
    assert!(!html.contains("style="), "style attribute in {html}");
    for script in html.split("<script").skip(1) {
        let tag = script.split('>').next().unwrap_or_default();
        assert!(tag.contains("src="), "inline script in {html}");
    }
    for tag in html.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap_or_default();
        for word in tag.split_whitespace() {
            let name = word.split('=').next().unwrap_or_default();
            let handler = word.contains('=')
                && name.len() > 2
                && name.starts_with("on")
                && name.bytes().all(|b| b.is_ascii_alphabetic());
            assert!(!handler, "event attribute {word} in {html}");
        }
    }
}

/// A POST answer: its status checked, nothing the CSP would refuse.
async fn post(
    dashboard: &Dashboard<'_>,
    path: &str,
    fields: &[(&str, &str)],
    status: u16,
) -> Answer {
    let a = dashboard.post(path, fields).await;
    assert_eq!(a.status, status, "{path}: {}", a.text);
    clean(&a);
    a
}

/// Undoes the HTML escaping of an attribute value or text.
fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#x3d;", "=")
        .replace("&#61;", "=")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The value of the input with element id `id`.
fn input_value(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let tag_start = html[..at].rfind('<')?;
    let tag = &html[tag_start..tag_start + html[tag_start..].find('>')?];
    let v = tag.find("value=\"")? + "value=\"".len();
    Some(unescape(&tag[v..v + tag[v..].find('"')?]))
}

/// The text of the element with id `id` (up to its first tag end).
fn field_error(html: &str, field: &str) -> Option<String> {
    let marker = format!("id=\"{field}-error\">");
    let at = html.find(&marker)? + marker.len();
    Some(unescape(&html[at..at + html[at..].find('<')?]))
}

/// The `href` of the link with element id `id`.
fn href(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let tag_start = html[..at].rfind('<')?;
    let tag = &html[tag_start..];
    let h = tag.find("href=\"")? + "href=\"".len();
    Some(unescape(&tag[h..h + tag[h..].find('"')?]))
}

async fn api(app: &TestApp, method: Method, path: &str) -> Answer {
    app.send(app.request(method, path)).await
}

// ---- webhooks -------------------------------------------------------------------

async fn webhook_ids(app: &TestApp) -> Vec<String> {
    let list = api(app, Method::GET, "/api/v1/webhooks?page_size=100").await;
    assert_eq!(list.status, 200, "{}", list.text);
    list.json["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|w| w["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Adds a subscription through the dashboard; returns its id.
async fn add_webhook(dashboard: &Dashboard<'_>, url: &str) -> String {
    let added = post(
        dashboard,
        "/dashboard/webhooks",
        &[("url", url), ("triggers", TRIGGER)],
        303,
    )
    .await;
    let to = Dashboard::location(&added);
    let id = to
        .strip_prefix("/dashboard/webhooks/")
        .unwrap_or_else(|| panic!("sent to {to}"));
    assert!(id.starts_with("webhook_"), "{id}");
    id.to_owned()
}

async fn webhook_subscriptions_are_made_edited_and_deleted_with_the_apis_sentences(
    backend: Backend,
) {
    let Some(app) = spawn_app_with(backend, Settings::default()).await else {
        return;
    };
    let dashboard = app.dashboard().await;
    let list = page(&dashboard, "/dashboard/webhooks").await;
    assert!(list.contains("id=\"add-webhook\""), "{list}");
    assert!(list.contains(&format!(
        "id=\"trigger-{}\"",
        TRIGGER.replace(['.', '_'], "-")
    )));

    // The API's URL check, its sentence next to the url field; nothing is made.
    for (url, says) in [
        (
            "ftp://example.com/hook",
            "Must be an absolute http:// or https:// URL",
        ),
        ("http://93.184.216.34/hook", "Must be an https:// URL"),
        ("https://127.0.0.1/hook", "allow_private_callback_urls"),
    ] {
        let refused = post(
            &dashboard,
            "/dashboard/webhooks",
            &[("url", url), ("triggers", TRIGGER)],
            400,
        )
        .await;
        let problem = field_error(&refused.text, "url").expect("a sentence next to url");
        assert!(problem.contains(says), "{url}: {problem}");
        // The form keeps what was typed.
        assert_eq!(
            input_value(&refused.text, "webhook-url").as_deref(),
            Some(url)
        );
    }
    let no_trigger = post(
        &dashboard,
        "/dashboard/webhooks",
        &[("url", "https://93.184.216.34/hook")],
        400,
    )
    .await;
    assert!(
        field_error(&no_trigger.text, "triggers")
            .expect("a sentence next to the triggers")
            .contains("Give at least one trigger"),
        "{}",
        no_trigger.text
    );
    assert_eq!(
        webhook_ids(&app).await,
        Vec::<String>::new(),
        "nothing made"
    );

    let id = add_webhook(&dashboard, "https://93.184.216.34/hook").await;
    assert_eq!(webhook_ids(&app).await, vec![id.clone()]);
    let list = page(&dashboard, "/dashboard/webhooks").await;
    assert!(list.contains(&format!("href=\"/dashboard/webhooks/{id}\"")));
    let shown = page(&dashboard, &format!("/dashboard/webhooks/{id}")).await;
    assert!(shown.contains("https://93.184.216.34/hook"), "{shown}");
    assert!(shown.contains("id=\"deliveries-region\" data-refresh=\"5\""));

    // Edit: a bad url is refused with the API's sentence and changes nothing.
    let path = format!("/dashboard/webhooks/{id}");
    let refused = post(
        &dashboard,
        &path,
        &[
            ("url", "http://10.0.0.1/x"),
            ("triggers", TRIGGER),
            ("is_active", "true"),
        ],
        400,
    )
    .await;
    assert!(
        field_error(&refused.text, "url").is_some(),
        "{}",
        refused.text
    );
    let api_view = api(&app, Method::GET, &format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(api_view.json["url"], "https://93.184.216.34/hook");
    // The PATCH fields: a new url, and an unticked "active" box.
    post(
        &dashboard,
        &path,
        &[
            ("url", "https://93.184.216.34/other"),
            ("triggers", TRIGGER),
        ],
        303,
    )
    .await;
    let api_view = api(&app, Method::GET, &format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(api_view.json["url"], "https://93.184.216.34/other");
    assert_eq!(api_view.json["is_active"], false);
    let shown = page(&dashboard, &path).await;
    assert!(shown.contains(">inactive<"), "{shown}");
    assert!(!shown.contains("id=\"webhook-active\" checked"));

    // Pages of the list.
    for n in 0..2 {
        add_webhook(&dashboard, &format!("https://93.184.216.34/{n}")).await;
    }
    let first = page(&dashboard, "/dashboard/webhooks?page_size=2").await;
    assert!(
        first.contains("https://93.184.216.34/1") && !first.contains("https://93.184.216.34/other")
    );
    let next = href(&first, "webhooks-next").expect("a next link");
    let second = page(&dashboard, &next).await;
    assert!(second.contains("https://93.184.216.34/other"), "{second}");
    assert!(href(&second, "webhooks-previous").is_some());
    // A page address that cannot be read is a 400 with the reason, in the frame.
    for (query, says) in [
        ("cursor=garbage", "The cursor is not valid."),
        ("page_size=0", "Must be a whole number from 1 to 100."),
        ("cursor=a&cursor=b", "could not be read"),
    ] {
        for list in ["webhooks", "bot-platforms", "connect-sessions"] {
            let a = dashboard.get(&format!("/dashboard/{list}?{query}")).await;
            assert_eq!(a.status, 400, "{list}?{query}: {}", a.text);
            assert!(
                a.text.contains(says) && a.text.contains("id=\"sign-out\""),
                "{}",
                a.text
            );
        }
    }

    post(&dashboard, &format!("{path}/delete"), &[], 303).await;
    api(&app, Method::GET, &format!("/api/v1/webhooks/{id}"))
        .await
        .assert_error(404, "not_found");
    assert_eq!(dashboard.get(&path).await.status, 404);
}

/// Connects a Zoom user, has the simulator deauthorize the app, and asks for a
/// token, which finds the grant gone: the connection is disconnected (a
/// `state_change` event). Returns the connection id.
async fn disconnect_a_connection(app: &TestApp) -> String {
    app.sim
        .control()
        .set_config(&SimConfig {
            access_token_ttl_s: Some(60),
            ..Default::default()
        })
        .await
        .expect("sim config");
    let (user, c) = app.connect(CLIENT, json!({})).await;
    assert_eq!(c.status, 201, "{}", c.text);
    let id = c.json["id"].as_str().expect("id").to_owned();
    app.sim
        .control()
        .deauthorize(&user, CLIENT)
        .await
        .expect("deauthorize");
    app.access_token(&id)
        .await
        .assert_error(409, "connection_disconnected");
    id
}

/// One round of the delivery worker: fan out the events, send what is due.
async fn deliver(app: &TestApp) {
    keeper::webhook_delivery::run_once(&app.keeper)
        .await
        .expect("delivery round");
}

async fn a_delivery_is_listed_with_its_status_and_resent(backend: Backend) {
    let Some(app) = service(backend).await else {
        return;
    };
    let dashboard = app.dashboard().await;
    let receiver = Receiver::start(200).await;
    let id = add_webhook(&dashboard, &receiver.url()).await;
    let path = format!("/dashboard/webhooks/{id}");
    assert!(page(&dashboard, &path).await.contains("No deliveries"));

    disconnect_a_connection(&app).await;
    deliver(&app).await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    let deliveries = api(
        &app,
        Method::GET,
        &format!("/api/v1/webhooks/{id}/deliveries"),
    )
    .await;
    let key = deliveries.json["results"][0]["idempotency_key"]
        .as_str()
        .expect("a delivery")
        .to_owned();
    assert_eq!(got[0].header("webhook-id"), key);

    let shown = page(&dashboard, &path).await;
    let row = shown
        .split(&format!("<tr id=\"delivery-{key}\""))
        .nth(1)
        .expect("the delivery's row")
        .split("</tr>")
        .next()
        .expect("row");
    assert!(row.contains("badge status-success"), "{row}");
    assert!(row.contains("<td>1</td>"), "one attempt: {row}");
    assert!(row.contains("HTTP 200"), "{row}");
    assert!(row.contains(&format!("id=\"resend-{key}\"")), "{row}");
    // The status filter.
    let failures = page(&dashboard, &format!("{path}?status=failure")).await;
    assert!(!failures.contains(&key));
    let bad = dashboard.get(&format!("{path}?status=lost")).await;
    assert_eq!(bad.status, 400);
    assert!(bad
        .text
        .contains("Must be one of pending, success, failure."));

    // Resend: what the API's resend does — pending again, then a new attempt.
    let resent = post(
        &dashboard,
        &format!("{path}/deliveries/{key}/resend"),
        &[],
        303,
    )
    .await;
    assert!(Dashboard::location(&resent).starts_with(&path));
    let pending = page(&dashboard, &path).await;
    assert!(pending.contains("badge status-pending"), "{pending}");
    deliver(&app).await;
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2, "the receiver got the resent delivery");
    assert_eq!(got[1].header("webhook-id"), key, "same idempotency key");
    let delivery = api(
        &app,
        Method::GET,
        &format!("/api/v1/webhooks/{id}/deliveries"),
    )
    .await;
    assert_eq!(delivery.json["results"][0]["attempt_count"], 2);
    let shown = page(&dashboard, &path).await;
    let row = shown
        .split(&format!("<tr id=\"delivery-{key}\""))
        .nth(1)
        .expect("row")
        .split("</tr>")
        .next()
        .expect("row");
    assert!(
        row.contains("badge status-success") && row.contains("<td>2</td>"),
        "{row}"
    );

    // Keys that are not this project's deliveries.
    for key in ["not-a-uuid", "0b6f1c2e-8f1d-4c3a-9a57-1f0e2d3c4b5a"] {
        let a = dashboard
            .post(&format!("{path}/deliveries/{key}/resend"), &[])
            .await;
        assert_eq!(a.status, 404, "{key}: {}", a.text);
    }
}

async fn the_signing_secret_is_shown_only_when_asked_and_rotated(backend: Backend) {
    let Some(app) = spawn_app_with(backend, Settings::default()).await else {
        return;
    };
    let dashboard = app.dashboard().await;
    let secret = |a: Answer| a.json["secret"].as_str().expect("secret").to_owned();
    let old = secret(api(&app, Method::GET, "/api/v1/webhook_secret").await);
    let id = add_webhook(&dashboard, "https://93.184.216.34/hook").await;
    let gets = [
        "/dashboard/webhooks".to_owned(),
        format!("/dashboard/webhooks/{id}"),
        "/dashboard/".to_owned(),
    ];
    for path in &gets {
        let html = page(&dashboard, path).await;
        assert!(
            !html.contains(&old) && !html.contains(&unescape(&old)),
            "{path}"
        );
    }
    let list = page(&dashboard, "/dashboard/webhooks").await;
    assert!(list.contains("id=\"reveal-secret\""));
    assert!(list.contains("data-confirm=\"Rotate the signing secret?"));

    let revealed = post(&dashboard, "/dashboard/webhook-secret", &[], 200).await;
    assert_eq!(
        input_value(&revealed.text, "signing-secret"),
        Some(old.clone())
    );
    assert!(revealed.text.contains("data-copy=\"signing-secret\""));
    // A GET of the action's address shows nothing.
    let got = dashboard.get("/dashboard/webhook-secret").await;
    assert_eq!(got.status, 303);

    let rotated = post(&dashboard, "/dashboard/webhook-secret/rotate", &[], 200).await;
    let new = input_value(&rotated.text, "signing-secret").expect("the new secret");
    assert_ne!(new, old);
    assert_eq!(
        new,
        secret(api(&app, Method::GET, "/api/v1/webhook_secret").await),
        "the API agrees"
    );
    assert!(
        rotated.text.contains("id=\"rotation-overlap\"")
            && rotated
                .text
                .contains("previous secret keeps signing for 24 hours"),
        "{}",
        rotated.text
    );
    for path in &gets {
        let html = page(&dashboard, path).await;
        assert!(!html.contains(&new) && !html.contains(&old), "{path}");
    }
}

// ---- bot platforms --------------------------------------------------------------

async fn platform_ids(app: &TestApp) -> Vec<String> {
    let list = api(app, Method::GET, "/api/v1/bot_platforms?page_size=100").await;
    assert_eq!(list.status, 200, "{}", list.text);
    list.json["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|p| p["id"].as_str().expect("id").to_owned())
        .collect()
}

async fn bot_platforms_are_made_edited_and_deleted_with_the_apis_sentences(backend: Backend) {
    let Some(app) = service(backend).await else {
        return;
    };
    let dashboard = app.dashboard().await;
    let list = page(&dashboard, "/dashboard/bot-platforms").await;
    assert!(list.contains("id=\"add-bot-platform\"") && list.contains(CLIENT));

    // The API's checks, each sentence next to its field; nothing is made.
    for (fields, field, says) in [
        (
            vec![("platform", "attendee")],
            "verification_secret",
            "Attendee signs every token request",
        ),
        (
            vec![
                ("platform", "attendee"),
                ("verification_secret", "not base64!"),
            ],
            "verification_secret",
            "44 characters of base64",
        ),
        (
            vec![
                ("platform", "recall"),
                ("verification_secret", ATTENDEE_SECRET),
            ],
            "verification_secret",
            "whsec_",
        ),
        (
            vec![("platform", "recall"), ("zak_user_id", "a b")],
            "zak_user_id",
            "Must be a Zoom user id",
        ),
        (
            vec![
                ("platform", "recall"),
                ("zoom_oauth_app_id", "zoa_0000000000000000"),
            ],
            "zoom_oauth_app_id",
            "No Zoom OAuth app with this id",
        ),
        (
            vec![("platform", "recall"), ("onbehalf_metadata_key", "user")],
            "onbehalf_metadata_key",
            "Recall's token requests carry no bot metadata",
        ),
        (vec![("platform", "zoom")], "platform", "attendee or recall"),
    ] {
        let refused = post(&dashboard, "/dashboard/bot-platforms", &fields, 400).await;
        let problem = field_error(&refused.text, field)
            .unwrap_or_else(|| panic!("{fields:?}: no sentence next to {field}: {}", refused.text));
        assert!(problem.contains(says), "{fields:?}: {problem}");
        assert!(
            !refused.text.contains("not base64!"),
            "a secret is never echoed back"
        );
    }
    assert_eq!(
        platform_ids(&app).await,
        Vec::<String>::new(),
        "nothing made"
    );

    // An Attendee platform: no token, so the answer is a redirect to its page.
    let made = post(
        &dashboard,
        "/dashboard/bot-platforms",
        &[
            ("platform", "attendee"),
            ("name", "Attendee prod"),
            ("verification_secret", ATTENDEE_SECRET),
            ("onbehalf_metadata_key", "zoom_user"),
        ],
        303,
    )
    .await;
    let path = Dashboard::location(&made).to_owned();
    let id = path
        .strip_prefix("/dashboard/bot-platforms/")
        .expect("its page")
        .to_owned();
    assert_eq!(platform_ids(&app).await, vec![id.clone()]);
    let shown = page(&dashboard, &path).await;
    assert!(!shown.contains(ATTENDEE_SECRET));
    let api_view = api(&app, Method::GET, &format!("/api/v1/bot_platforms/{id}")).await;
    let url = api_view.json["urls"]["zoom_tokens_url"]
        .as_str()
        .expect("url");
    assert!(
        shown.contains(&format!("<code id=\"url-zoom-tokens\">{url}</code>")),
        "{shown}"
    );
    assert!(shown.contains("data-copy=\"url-zoom-tokens\""));
    assert!(shown.contains("id=\"calls-region\" data-refresh=\"5\""));

    // Edit: the API's sentences; a refused edit changes nothing.
    let refused = post(
        &dashboard,
        &path,
        &[("name", "  "), ("zak_user_id", "u-1")],
        400,
    )
    .await;
    assert_eq!(
        field_error(&refused.text, "name").as_deref(),
        Some("Must not be empty or only whitespace.")
    );
    let api_view = api(&app, Method::GET, &format!("/api/v1/bot_platforms/{id}")).await;
    assert_eq!(api_view.json["name"], "Attendee prod");
    assert!(api_view.json["zak_user_id"].is_null());
    post(
        &dashboard,
        &path,
        &[
            ("name", "Attendee staging"),
            ("zak_user_id", "u-1"),
            ("onbehalf_metadata_key", ""),
        ],
        303,
    )
    .await;
    let api_view = api(&app, Method::GET, &format!("/api/v1/bot_platforms/{id}")).await;
    assert_eq!(api_view.json["name"], "Attendee staging");
    assert_eq!(api_view.json["zak_user_id"], "u-1");
    assert!(api_view.json["onbehalf_metadata_key"].is_null());
    assert_eq!(api_view.json["verification"], "attendee_signature");

    // The project's default ZAK user.
    let refused = post(
        &dashboard,
        "/dashboard/default-zak-user",
        &[("default_zak_user_id", "a b")],
        400,
    )
    .await;
    assert!(field_error(&refused.text, "default_zak_user_id").is_some());
    post(
        &dashboard,
        "/dashboard/default-zak-user",
        &[("default_zak_user_id", "zak-user-1")],
        303,
    )
    .await;
    let project = api(&app, Method::GET, "/api/v1/project").await;
    assert_eq!(project.json["default_zak_user_id"], "zak-user-1");
    assert_eq!(
        input_value(
            &page(&dashboard, "/dashboard/bot-platforms").await,
            "default-zak-user-id"
        )
        .as_deref(),
        Some("zak-user-1")
    );
    post(
        &dashboard,
        "/dashboard/default-zak-user",
        &[("default_zak_user_id", "")],
        303,
    )
    .await;
    let project = api(&app, Method::GET, "/api/v1/project").await;
    assert!(project.json["default_zak_user_id"].is_null());

    post(&dashboard, &format!("{path}/delete"), &[], 303).await;
    api(&app, Method::GET, &format!("/api/v1/bot_platforms/{id}"))
        .await
        .assert_error(404, "not_found");
    assert_eq!(dashboard.get(&path).await.status, 404);
}

/// The platform's page once its call log shows `n` calls (a call is written just
/// after its answer).
async fn calls_shown(dashboard: &Dashboard<'_>, path: &str, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let html = page(dashboard, path).await;
        let region = html
            .split("id=\"calls-region\"")
            .nth(1)
            .expect("the call log");
        if region.matches("class=\"badge outcome-").count() >= n || Instant::now() > deadline {
            return html;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_recall_platform_shows_its_token_once_and_its_calls(backend: Backend) {
    let Some(app) = service(backend).await else {
        return;
    };
    let (user, c) = app.connect(CLIENT, json!({})).await;
    assert_eq!(c.status, 201, "{}", c.text);
    let dashboard = app.dashboard().await;
    // A Recall workspace without a secret: the token is in the POST's answer only.
    let made = post(
        &dashboard,
        "/dashboard/bot-platforms",
        &[("platform", "recall"), ("zak_user_id", &user)],
        201,
    )
    .await;
    let token = input_value(&made.text, "query-token").expect("the token, shown once");
    let zak_url = input_value(&made.text, "url-zak").expect("the ZAK URL");
    assert!(
        zak_url.ends_with(&format!("/recall/zak?token={token}")),
        "{zak_url}"
    );
    for id in ["url-obf-token", "url-join-token"] {
        let url = input_value(&made.text, id).expect("URL");
        assert!(url.ends_with(&format!("?token={token}")), "{url}");
    }
    let id = platform_ids(&app).await.remove(0);
    let path = format!("/dashboard/bot-platforms/{id}");
    let later = page(&dashboard, &path).await;
    assert!(!later.contains(&token), "never shown again");
    let api_view = api(&app, Method::GET, &format!("/api/v1/bot_platforms/{id}")).await;
    for (element, key) in [
        ("url-zak", "zak_url"),
        ("url-obf-token", "obf_token_url"),
        ("url-join-token", "join_token_url"),
    ] {
        let url = api_view.json["urls"][key].as_str().expect("url");
        assert!(
            later.contains(&format!("<code id=\"{element}\">{url}</code>")),
            "{key}: {later}"
        );
    }

    // A bot asks for a ZAK, and one asks without the token.
    let a = app.send(app.http.get(&zak_url)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let base = zak_url.split('?').next().expect("url");
    let refused = app.send(app.http.get(format!("{base}?token=wrong"))).await;
    assert_eq!(refused.status, 401);
    let html = calls_shown(&dashboard, &path, 2).await;
    let log = html.split("id=\"calls-region\"").nth(1).expect("log");
    assert!(log.contains("<code>recall_zak</code>"), "{log}");
    assert!(log.contains("badge outcome-ok\">minted<"), "{log}");
    assert!(log.contains("badge outcome-error"), "{log}");
    assert!(
        log.contains("<td>200</td>") && log.contains("<td>401</td>"),
        "{log}"
    );
    assert!(!log.contains(&a.text), "no token in the log");

    // A new token, from the edit form, is shown once too.
    let renewed = post(
        &dashboard,
        &path,
        &[
            ("name", "Recall.ai"),
            ("zak_user_id", &user),
            ("new_query_token", "true"),
        ],
        200,
    )
    .await;
    let new_token = input_value(&renewed.text, "query-token").expect("the new token");
    assert_ne!(new_token, token);
    assert_eq!(app.send(app.http.get(&zak_url)).await.status, 401);
    assert!(!page(&dashboard, &path).await.contains(&new_token));
}

// ---- connect links ----------------------------------------------------------------

/// A browser that does not follow redirects by itself.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned()
}

/// The hidden fields of the simulated Zoom consent page's form that approves as
/// `user`.
fn consent_form(page: &str, user: &str) -> Vec<(String, String)> {
    let form = page
        .split("<form")
        .skip(1)
        .find(|f| f.contains(&format!("value=\"{user}\"")))
        .expect("the approving form");
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
    fields.push(("decision".to_owned(), "approve".to_owned()));
    fields
}

/// The user opens `link`, continues to Zoom, approves as `user`, and is sent back
/// through zoomkeeper's callback: where zoomkeeper finally sends them.
async fn complete(link: &str, user: &str) -> String {
    let b = browser();
    let landing = b.get(link).send().await.expect("landing");
    assert_eq!(landing.status().as_u16(), 200);
    let pressed = b.post(link).send().await.expect("continue");
    assert_eq!(pressed.status().as_u16(), 303);
    let authorize = location(&pressed);
    let consent = b.get(&authorize).send().await.expect("consent");
    let consent = consent.text().await.expect("consent page");
    let origin = url::Url::parse(&authorize).expect("url");
    let approved = b
        .post(origin.join("/oauth/authorize").expect("url"))
        .form(&consent_form(&consent, user))
        .send()
        .await
        .expect("approve");
    assert!(approved.status().is_redirection());
    let callback = b.get(location(&approved)).send().await.expect("callback");
    assert_eq!(callback.status().as_u16(), 303);
    location(&callback)
}

/// The row of session `id` on the list page.
fn session_row(html: &str, id: &str) -> String {
    html.split(&format!("<tr id=\"session-{id}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no row for {id}: {html}"))
        .split("</tr>")
        .next()
        .expect("row")
        .to_owned()
}

async fn connect_links_are_shown_once_and_followed_to_completion(backend: Backend) {
    let Some(app) = service(backend).await else {
        return;
    };
    let dashboard = app.dashboard().await;
    let list = page(&dashboard, "/dashboard/connect-sessions").await;
    assert!(list.contains("No connect sessions yet."));
    assert!(list.contains("id=\"connect-sessions-region\" data-refresh=\"5\""));
    let app_id = app.all_app_ids().await.remove(0);
    assert!(
        list.contains(&format!("<option value=\"{app_id}\"")),
        "{list}"
    );

    let made = post(
        &dashboard,
        "/dashboard/connect-sessions",
        &[
            ("zoom_oauth_app_id", &app_id),
            ("return_url", "https://app.example.com/zoom/done"),
            ("metadata", "{\"team\": \"sales\"}"),
            ("deduplication_key", "customer-42"),
            ("is_local_recording_token_supported", "true"),
            ("is_onbehalf_token_supported", "true"),
            ("expires_in", "3600"),
        ],
        201,
    )
    .await;
    let link = input_value(&made.text, "connect-url").expect("the link, shown once");
    assert!(link.starts_with(&app.url("/connect/")), "{link}");
    assert!(made.text.contains("data-copy=\"connect-url\""));
    let marker = "id=\"created-session-id\">";
    let at = made.text.find(marker).expect("session id") + marker.len();
    let id = made.text[at..].split('<').next().expect("id").to_owned();
    let api_view = api(
        &app,
        Method::GET,
        &format!("/api/v1/zoom_oauth_connect_sessions/{id}"),
    )
    .await;
    assert_eq!(api_view.json["status"], "pending");
    assert_eq!(api_view.json["metadata"], json!({"team": "sales"}));
    assert_eq!(api_view.json["is_onbehalf_token_supported"], true);

    let list = page(&dashboard, "/dashboard/connect-sessions").await;
    let token = link.rsplit('/').next().expect("token");
    assert!(!list.contains(token), "the link is shown only once");
    let row = session_row(&list, &id);
    assert!(row.contains("badge status-pending"), "{row}");
    assert!(row.contains(CLIENT), "{row}");

    let someone = app
        .sim
        .control()
        .create_user(&SimUser::default())
        .await
        .expect("sim user")
        .id;
    let back = complete(&link, &someone).await;
    assert!(
        back.starts_with("https://app.example.com/zoom/done?"),
        "{back}"
    );
    let connection = url::Url::parse(&back)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "zoom_oauth_connection_id")
        .map(|(_, v)| v.into_owned())
        .expect("a connection");
    let row = session_row(&page(&dashboard, "/dashboard/connect-sessions").await, &id);
    assert!(row.contains("badge status-completed"), "{row}");
    assert!(
        row.contains(&format!("href=\"/dashboard/connections/{connection}\"")),
        "{row}"
    );

    // Pages of the list.
    for n in 0..2 {
        post(
            &dashboard,
            "/dashboard/connect-sessions",
            &[
                ("return_url", &format!("https://app.example.com/{n}")),
                ("is_local_recording_token_supported", "true"),
            ],
            201,
        )
        .await;
    }
    let first = page(&dashboard, "/dashboard/connect-sessions?page_size=2").await;
    assert!(!first.contains(&format!("session-{id}")));
    let next = href(&first, "sessions-next").expect("a next link");
    let second = page(&dashboard, &next).await;
    assert!(second.contains(&format!("session-{id}")), "{second}");
    assert!(href(&second, "sessions-previous").is_some());
}

async fn connect_link_input_is_refused_next_to_its_field(backend: Backend) {
    let Some(app) = service(backend).await else {
        return;
    };
    let dashboard = app.dashboard().await;
    let valid = [
        ("return_url", "https://app.example.com/done"),
        ("is_local_recording_token_supported", "true"),
    ];
    for (field, value, says) in [
        ("return_url", "ftp://app.example.com/done", ""),
        ("return_url", "not a url", ""),
        ("metadata", "{\"team\": ", "Must be a JSON object"),
        ("metadata", "{\"n\": 1}", ""),
        ("expires_in", "10", "Must be between 60 and 604800 seconds."),
        (
            "expires_in",
            "soon",
            "Must be between 60 and 604800 seconds.",
        ),
        ("zoom_oauth_app_id", "zoa_0000000000000000", ""),
    ] {
        let mut fields: Vec<(&str, &str)> =
            valid.iter().filter(|(k, _)| *k != field).copied().collect();
        fields.push((field, value));
        let refused = post(&dashboard, "/dashboard/connect-sessions", &fields, 400).await;
        let problem = field_error(&refused.text, field)
            .unwrap_or_else(|| panic!("{field}={value}: no sentence: {}", refused.text));
        assert!(problem.contains(says), "{field}={value}: {problem}");
        assert!(!refused.text.contains("id=\"connect-url\""));
    }
    // No capability at all: the API's sentence.
    let refused = post(
        &dashboard,
        "/dashboard/connect-sessions",
        &[("return_url", "https://app.example.com/done")],
        400,
    )
    .await;
    assert!(
        field_error(&refused.text, "is_local_recording_token_supported")
            .expect("sentence")
            .contains("At least one of")
    );
    let list = page(&dashboard, "/dashboard/connect-sessions").await;
    assert!(
        list.contains("No connect sessions yet."),
        "nothing was made"
    );
}

// ---- another project ----------------------------------------------------------------

async fn another_projects_ids_are_not_found(backend: Backend) {
    let Some(app) = service(backend).await else {
        return;
    };
    let (_, other_key) = app.other_project("other").await;
    let as_other = |method: Method, path: &str, body: Value| {
        app.send(app.request_as(&other_key, method, path).json(&body))
    };
    let webhook = as_other(
        Method::POST,
        "/api/v1/webhooks",
        json!({"url": "https://93.184.216.34/other", "triggers": [TRIGGER]}),
    )
    .await;
    assert_eq!(webhook.status, 201, "{}", webhook.text);
    let webhook = webhook.json["id"].as_str().expect("id").to_owned();
    let platform = as_other(
        Method::POST,
        "/api/v1/bot_platforms",
        json!({"platform": "attendee", "verification_secret": ATTENDEE_SECRET}),
    )
    .await;
    assert_eq!(platform.status, 201, "{}", platform.text);
    let platform = platform.json["id"].as_str().expect("id").to_owned();
    app.zoom_app("other-client", "other-secret").await;
    let other_app = as_other(
        Method::POST,
        "/api/v1/zoom_oauth_apps",
        json!({"client_id": "other-client", "client_secret": "other-secret"}),
    )
    .await;
    assert_eq!(other_app.status, 201, "{}", other_app.text);
    let other_app = other_app.json["id"].as_str().expect("id").to_owned();

    let dashboard = app.dashboard().await;
    let key = "0b6f1c2e-8f1d-4c3a-9a57-1f0e2d3c4b5a";
    for path in [
        format!("/dashboard/webhooks/{webhook}"),
        format!("/dashboard/bot-platforms/{platform}"),
        "/dashboard/webhooks/nonsense".to_owned(),
        "/dashboard/bot-platforms/nonsense".to_owned(),
    ] {
        let a = dashboard.get(&path).await;
        assert_eq!(a.status, 404, "{path}: {}", a.text);
        clean(&a);
    }
    for (path, fields) in [
        (
            format!("/dashboard/webhooks/{webhook}"),
            vec![("url", "https://93.184.216.34/mine"), ("triggers", TRIGGER)],
        ),
        (format!("/dashboard/webhooks/{webhook}/delete"), vec![]),
        (
            format!("/dashboard/webhooks/{webhook}/deliveries/{key}/resend"),
            vec![],
        ),
        (
            format!("/dashboard/bot-platforms/{platform}"),
            vec![("name", "mine")],
        ),
        (
            format!("/dashboard/bot-platforms/{platform}/delete"),
            vec![],
        ),
    ] {
        let a = dashboard.post(&path, &fields).await;
        assert_eq!(a.status, 404, "{path}: {}", a.text);
    }
    // Nothing of theirs changed.
    let theirs = as_other(
        Method::GET,
        &format!("/api/v1/webhooks/{webhook}"),
        json!(null),
    )
    .await;
    assert_eq!(theirs.json["url"], "https://93.184.216.34/other");
    let theirs = as_other(
        Method::GET,
        &format!("/api/v1/bot_platforms/{platform}"),
        json!(null),
    )
    .await;
    assert_eq!(theirs.status, 200);
    assert_eq!(theirs.json["name"], "Attendee");
    // Their app is no app of this project for a connect link or a bot platform.
    for (path, fields) in [
        (
            "/dashboard/connect-sessions",
            vec![
                ("zoom_oauth_app_id", other_app.as_str()),
                ("return_url", "https://app.example.com/done"),
                ("is_local_recording_token_supported", "true"),
            ],
        ),
        (
            "/dashboard/bot-platforms",
            vec![
                ("platform", "recall"),
                ("zoom_oauth_app_id", other_app.as_str()),
            ],
        ),
    ] {
        let refused = post(&dashboard, path, &fields, 400).await;
        assert!(
            field_error(&refused.text, "zoom_oauth_app_id").is_some(),
            "{path}: {}",
            refused.text
        );
    }
    // Their sessions and platforms are not listed.
    as_other(
        Method::POST,
        "/api/v1/zoom_oauth_connect_sessions",
        json!({"return_url": "https://other.example.com/done"}),
    )
    .await;
    let list = page(&dashboard, "/dashboard/connect-sessions").await;
    assert!(!list.contains("other.example.com"));
    let list = page(&dashboard, "/dashboard/bot-platforms").await;
    assert!(!list.contains(&platform));
    let list = page(&dashboard, "/dashboard/webhooks").await;
    assert!(!list.contains(&webhook));
}
