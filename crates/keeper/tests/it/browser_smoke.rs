//! The browser harness works end to end: a person approves on the Zoom simulator's
//! consent page in headless Chromium and lands on the app's redirect URI with a code.

use std::sync::{Arc, Mutex};

use axum::extract::RawQuery;
use axum::response::Html;
use axum::routing::get;
use testkit::browser::Browser;
use zoom_sim::{SimApp, SimUser};

/// A redirect target on 127.0.0.1 that records each query string it is sent.
async fn redirect_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let router = axum::Router::new().route(
        "/cb",
        get(move |RawQuery(query): RawQuery| async move {
            record.lock().unwrap().push(query.unwrap_or_default());
            Html("<!doctype html><title>callback</title><p id=\"received\">ok</p>")
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/cb", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_on_the_consent_page_redirects_with_a_code() {
    let Some(mut browser) = Browser::start().await else {
        return;
    };
    let sim = zoom_sim::Simulator::start().await.expect("simulator");
    let control = sim.control();
    control
        .create_app(&SimApp {
            client_id: "browser-client".into(),
            client_secret: "browser-secret".into(),
            ..SimApp::default()
        })
        .await
        .expect("app");
    let user = control
        .create_user(&SimUser {
            email: Some("ada@example.com".into()),
            ..SimUser::default()
        })
        .await
        .expect("user");
    let (redirect_uri, seen) = redirect_receiver().await;

    let mut authorize = url::Url::parse(&format!("{}/oauth/authorize", sim.url())).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "browser-client")
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("state", "s1");
    browser.goto(authorize.as_str()).await;
    let page = browser.text("body").await;
    assert!(page.contains("browser-client"), "{page}");
    assert!(page.contains("ada@example.com"), "{page}");
    browser.screenshot("consent").await;

    browser
        .click(&format!(
            "form:has(input[name=user_id][value=\"{}\"]) button[value=approve]",
            user.id
        ))
        .await;
    assert_eq!(browser.text("#received").await, "ok");
    browser.screenshot("redirected").await;

    let landed = browser.current_url().await;
    assert_eq!(
        landed.as_str().split('?').next(),
        Some(redirect_uri.as_str())
    );
    let query: Vec<(String, String)> = landed.query_pairs().into_owned().collect();
    assert!(
        query.iter().any(|(k, v)| k == "code" && !v.is_empty()),
        "no code in {landed}"
    );
    assert!(query.contains(&("state".into(), "s1".into())), "{landed}");
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the redirect URI was hit once"
    );
    browser.close().await;
}
