//! An operator's day in the dashboard, in headless Chromium, on SQLite and PostgreSQL
//! (issue 15's walk): sign in; add a Zoom app (a wrong secret is refused by the
//! credential check, the right one kept) and copy its webhook URL into Zoom; send a
//! connect link and complete it as the user; see the connection, its events and a test
//! token; watch the connection turn disconnected when the user removes the app in Zoom;
//! see the webhook deliveries and resend one; create and disable an API key; sign out.
//! Every step saves a screenshot under `target/test-output/<test>/`.

use std::time::Duration;

use keeper::config::Settings;
use testkit::browser::Browser;
use testkit::dashboard::PASSWORD;
use testkit::{on_both_databases, spawn_app_with, Backend, Receiver};

const CLIENT: &str = "walk-client";
const SECRET: &str = "walk-client-secret";
const ZOOM_WEBHOOK_SECRET: &str = "walk-zoom-webhook-secret";

on_both_databases!(an_operator_walks_through_the_dashboard);
async fn an_operator_walks_through_the_dashboard(backend: Backend) {
    let Some(mut browser) = Browser::start().await else {
        return;
    };
    let settings = Settings {
        allow_private_callback_urls: Some(true),
        // The workers run: webhook deliveries go out by themselves.
        role: Some("all".into()),
        ..Settings::default()
    };
    let Some(app) = spawn_app_with(backend, settings).await else {
        return;
    };
    app.sim
        .control()
        .create_app(&zoom_sim::SimApp {
            client_id: CLIENT.into(),
            client_secret: SECRET.into(),
            webhook_secret: Some(ZOOM_WEBHOOK_SECRET.into()),
            ..Default::default()
        })
        .await
        .expect("the Zoom app exists at Zoom");
    let user = app.zoom_user(None).await;
    app.operator("ops@example.com", PASSWORD).await;
    let receiver = Receiver::start(200).await;
    let base = app.listen_url.clone();

    // Sign in: the overview asks for it first.
    browser.goto(&format!("{base}/")).await;
    assert!(browser
        .current_url()
        .await
        .path()
        .ends_with("/dashboard/login"));
    browser.fill("#email", "ops@example.com").await;
    browser.fill("#password", PASSWORD).await;
    browser.screenshot("sign-in").await;
    browser.click("#sign-in").await;
    assert!(browser.text(".who").await.contains("ops@example.com"));
    browser.screenshot("overview").await;

    // Add the Zoom app: the wrong secret first.
    browser.goto(&format!("{base}/dashboard/apps")).await;
    browser.fill("input[name=client_id]", CLIENT).await;
    browser
        .fill("input[name=client_secret]", "not-the-secret")
        .await;
    browser
        .fill("input[name=webhook_secret]", ZOOM_WEBHOOK_SECRET)
        .await;
    browser.click("#add-app").await;
    let refused = browser.text("#client_secret-error").await;
    assert!(refused.contains("Zoom rejected"), "{refused}");
    browser.screenshot("app-refused").await;
    browser.fill("input[name=client_secret]", SECRET).await;
    browser
        .fill("input[name=webhook_secret]", ZOOM_WEBHOOK_SECRET)
        .await;
    browser.click("#add-app").await;
    let webhook_url = browser.value("#webhook-url").await;
    assert!(webhook_url.starts_with(&app.base), "{webhook_url}");
    browser.click("button[data-copy=webhook-url]").await;
    browser
        .wait_for_text("button[data-copy=webhook-url]", "Copied")
        .await;
    browser.screenshot("app").await;
    // Paste it into the Zoom app's event subscription.
    app.sim
        .control()
        .update_app(
            CLIENT,
            &zoom_sim::SimAppPatch {
                webhook_url: Some(webhook_url.replace(&app.base, &base)),
                ..Default::default()
            },
        )
        .await
        .expect("Zoom takes the webhook URL");

    // An outgoing webhook to our receiver.
    browser.goto(&format!("{base}/dashboard/webhooks")).await;
    browser.fill("input[name=url]", &receiver.url()).await;
    // The one trigger there is comes ticked.
    browser.click("#add-webhook").await;
    browser
        .wait_for_text("main", "zoom_oauth_connection.state_change")
        .await;
    let subscription_page = browser.current_url().await;
    browser.screenshot("webhook").await;

    // A connect link, completed by the user at Zoom.
    browser
        .goto(&format!("{base}/dashboard/connect-sessions"))
        .await;
    browser
        .fill(
            "input[name=return_url]",
            &format!("{base}/dashboard/connections"),
        )
        .await;
    browser.click("#create-connect-link").await;
    let link = browser.value("#connect-url").await;
    assert!(link.contains("/connect/"), "{link}");
    browser.screenshot("connect-link").await;
    browser.goto(&link).await;
    browser.screenshot("connect-landing").await;
    browser.click("#continue").await;
    browser
        .click(&format!(
            "form:has(input[name=user_id][value=\"{user}\"]) button[value=approve]"
        ))
        .await;
    // Back at the return URL: the connections page, with the new connection.
    browser.wait_for_path("/dashboard/connections").await;
    browser.wait_for_text("main", &user).await;
    browser.screenshot("connections").await;

    // The connection, its events and a test token.
    browser.click("a[id^=connection-zoc_]").await;
    assert_eq!(browser.text("#connection-state").await.trim(), "connected");
    browser.click("#mint-token").await;
    let masked = browser.text("#minted-masked").await;
    assert!(masked.contains('…'), "{masked}");
    assert!(!browser.text("#minted-expires").await.trim().is_empty());
    browser.screenshot("test-token").await;

    // The user removes the app in Zoom: the page turns disconnected by itself.
    app.sim
        .control()
        .deauthorize(&user, CLIENT)
        .await
        .expect("deauthorized at Zoom");
    browser
        .wait_for_text("#connection-state", "disconnected")
        .await;
    let cause = browser.text("#connection-failure").await;
    assert!(!cause.trim().is_empty(), "the cause is shown");
    browser.screenshot("connection").await;

    // The deliveries: connected, then disconnected; resend one.
    let delivered = receiver.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(delivered.len(), 2);
    browser.goto(subscription_page.as_str()).await;
    browser.wait_for_text("#deliveries-region", "success").await;
    browser.screenshot("deliveries").await;
    browser.click("button[id^=resend-]").await;
    receiver.wait_for(3, Duration::from_secs(30)).await;
    browser.screenshot("resent").await;

    // An API key: shown once, then disabled.
    browser.goto(&format!("{base}/dashboard/api-keys")).await;
    browser.fill("#name", "walk key").await;
    browser
        .click("form[action=\"/dashboard/api-keys\"] button[type=submit]")
        .await;
    let key = browser.value("#new-key").await;
    assert!(key.starts_with("zk_"), "{key}");
    browser.screenshot("api-key-created").await;
    browser.goto(&format!("{base}/dashboard/api-keys")).await;
    assert!(!browser.text("main").await.contains(&key));
    browser
        .click("#api-keys tbody tr:first-child form button")
        .await;
    browser.accept_dialog().await;
    browser.wait_for_text("#api-keys", "disabled").await;
    let refused = app
        .send(app.request_as(&key, reqwest::Method::GET, "/api/v1/zoom_oauth_apps"))
        .await;
    assert_eq!(refused.status, 401);
    browser.screenshot("api-key-disabled").await;

    // Sign out: the session is over.
    browser.click("#sign-out").await;
    browser.wait_for_text("main", "You have signed out.").await;
    browser.screenshot("signed-out").await;
    browser.goto(&format!("{base}/dashboard/connections")).await;
    assert!(browser
        .current_url()
        .await
        .path()
        .ends_with("/dashboard/login"));
    browser.close().await;
}
