//! The dashboard's sessions and its security (DESIGN.md §13), over plain HTTP as a
//! browser without JavaScript uses it, on both databases. The flows in a real
//! browser are in `dashboard_browser`.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use testkit::dashboard::{set_cookie, sign_in, Dashboard, PASSWORD};
use testkit::{on_both_databases, spawn_app, spawn_app_with, Backend, TestApp};

on_both_databases!(signing_in_sets_a_session_cookie_a_script_cannot_read);
async fn signing_in_sets_a_session_cookie_a_script_cannot_read(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.operator("ops@example.com", PASSWORD).await;
    let answer = sign_in(&app, "Ops@Example.com", PASSWORD).await;
    assert_eq!(answer.status, 303, "{}", answer.text);
    assert_eq!(Dashboard::location(&answer), "/dashboard/");
    let cookie = set_cookie(&answer, "zk_session").expect("session cookie");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/dashboard"] {
        assert!(cookie.contains(flag), "{flag} missing from {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");

    let dashboard = app.dashboard_as("ops@example.com", PASSWORD).await;
    let home = dashboard.get("/dashboard/").await;
    assert_eq!(home.status, 200);
    assert!(home.text.contains("ops@example.com"), "{}", home.text);
    assert!(!home.text.contains(&dashboard.cookie["zk_session=".len()..]));
}

#[tokio::test]
async fn behind_https_the_session_cookie_is_secure() {
    let extra = keeper::config::Settings {
        public_url: Some("https://zoomkeeper.example.com".into()),
        ..Default::default()
    };
    let Some(app) = spawn_app_with(Backend::Sqlite, extra).await else {
        return;
    };
    app.operator("ops@example.com", PASSWORD).await;
    let answer = sign_in(&app, "ops@example.com", PASSWORD).await;
    assert_eq!(answer.status, 303, "{}", answer.text);
    let cookie = set_cookie(&answer, "zk_session").expect("session cookie");
    for flag in ["HttpOnly", "SameSite=Lax", "Secure"] {
        assert!(cookie.contains(flag), "{flag} missing from {cookie}");
    }
}

on_both_databases!(without_a_session_every_page_sends_the_browser_to_sign_in);
async fn without_a_session_every_page_sends_the_browser_to_sign_in(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let root = client.get(app.url("/")).send().await.expect("GET /");
    assert_eq!(root.status().as_u16(), 303);
    assert_eq!(root.headers()["location"], "/dashboard/");
    for page in ["/dashboard/", "/dashboard/api-keys", "/dashboard/operators"] {
        let answer = client.get(app.url(page)).send().await.expect("GET");
        assert_eq!(answer.status().as_u16(), 303, "{page}");
        let to = answer.headers()["location"].to_str().expect("ascii");
        assert!(to.starts_with("/dashboard/login?next="), "{page} → {to}");
    }
    // A forged cookie is no session.
    let forged = client
        .get(app.url("/dashboard/"))
        .header(
            "cookie",
            "zk_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .send()
        .await
        .expect("GET");
    assert_eq!(forged.status().as_u16(), 303);
}

on_both_databases!(wrong_passwords_are_throttled_per_email_address);
async fn wrong_passwords_are_throttled_per_email_address(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.operator("ops@example.com", PASSWORD).await;
    for attempt in 1..=5 {
        let answer = sign_in(&app, "ops@example.com", "not the password").await;
        assert_eq!(answer.status, 401, "attempt {attempt}: {}", answer.text);
        assert!(
            answer.text.contains("Wrong email or password."),
            "{}",
            answer.text
        );
        assert!(set_cookie(&answer, "zk_session").is_none());
    }
    // The sixth try is refused even with the right password, and says when to retry.
    let throttled = sign_in(&app, "ops@example.com", PASSWORD).await;
    assert_eq!(throttled.status, 429, "{}", throttled.text);
    assert!(
        throttled.text.contains("Too many failed sign-ins"),
        "{}",
        throttled.text
    );
    let retry: u64 = throttled.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=900).contains(&retry), "{retry}");
    assert!(set_cookie(&throttled, "zk_session").is_none());
    // An unknown address is answered exactly like a known one, throttling included.
    for _ in 1..=5 {
        assert_eq!(
            sign_in(&app, "nobody@example.com", "guess guess guess")
                .await
                .status,
            401
        );
    }
    assert_eq!(
        sign_in(&app, "nobody@example.com", "guess guess guess")
            .await
            .status,
        429
    );
    // Another address is not affected; the window passes.
    app.operator("other@example.com", PASSWORD).await;
    assert_eq!(
        sign_in(&app, "other@example.com", PASSWORD).await.status,
        303
    );
    app.keeper.clock.advance(Duration::from_secs(15 * 60 + 1));
    assert_eq!(sign_in(&app, "ops@example.com", PASSWORD).await.status, 303);
}

on_both_databases!(a_session_ends_at_logout_and_after_its_idle_timeout);
async fn a_session_ends_at_logout_and_after_its_idle_timeout(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let dashboard = app.dashboard().await;
    let out = dashboard.post("/dashboard/logout", &[]).await;
    assert_eq!(out.status, 303, "{}", out.text);
    assert_eq!(Dashboard::location(&out), "/dashboard/login?signed_out=1");
    let cleared = set_cookie(&out, "zk_session").expect("the cookie is cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // The old cookie no longer signs anyone in.
    let after = dashboard.get("/dashboard/").await;
    assert_eq!(after.status, 303);

    let dashboard = app.dashboard_as("ops@example.com", PASSWORD).await;
    // Used within the idle timeout, it lives on.
    app.keeper.clock.advance(Duration::from_secs(11 * 3600));
    assert_eq!(dashboard.get("/dashboard/").await.status, 200);
    app.keeper.clock.advance(Duration::from_secs(11 * 3600));
    assert_eq!(dashboard.get("/dashboard/").await.status, 200);
    // A page refreshing itself does not keep the session alive.
    app.keeper.clock.advance(Duration::from_secs(11 * 3600));
    assert_eq!(dashboard.refresh("/dashboard/").await.status, 200);
    app.keeper.clock.advance(Duration::from_secs(3600 + 1));
    assert_eq!(dashboard.refresh("/dashboard/").await.status, 303);
    let dashboard = app.dashboard_as("ops@example.com", PASSWORD).await;
    // Unused for 12 hours, it has ended.
    app.keeper.clock.advance(Duration::from_secs(12 * 3600 + 1));
    let ended = dashboard.get("/dashboard/").await;
    assert_eq!(ended.status, 303);
    assert!(Dashboard::location(&ended).starts_with("/dashboard/login"));
}

on_both_databases!(api_keys_are_shown_once_and_disabled_keys_stop_working);
async fn api_keys_are_shown_once_and_disabled_keys_stop_working(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let dashboard = app.dashboard().await;
    let created = dashboard
        .post("/dashboard/api-keys", &[("name", "prod bots")])
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let at = created
        .text
        .find("id=\"new-key\" readonly value=\"")
        .expect("key shown")
        + 29;
    let key = created.text[at..]
        .split('"')
        .next()
        .expect("value")
        .to_owned();
    assert!(key.starts_with("zk_"), "{key}");
    let works = app
        .send(app.request_as(&key, Method::GET, "/api/v1/zoom_oauth_apps"))
        .await;
    assert_eq!(works.status, 200, "{}", works.text);
    // Never shown again.
    let list = dashboard.get("/dashboard/api-keys").await;
    assert!(list.text.contains("prod bots"));
    assert!(!list.text.contains(&key));
    // An empty name is refused next to its field, and nothing is made.
    let refused = dashboard
        .post("/dashboard/api-keys", &[("name", "  ")])
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.text.contains("id=\"name-error\""),
        "{}",
        refused.text
    );

    let id_at = list.text.find("data-key-id=\"key_").expect("row") + 13;
    let ids: Vec<String> = list.text[id_at - 13..]
        .split("data-key-id=\"")
        .skip(1)
        .map(|s| s.split('"').next().expect("id").to_owned())
        .collect();
    let row_of_prod = list
        .text
        .split("<tr data-key-id=\"")
        .find(|r| r.contains("prod bots"));
    let prod_id = row_of_prod.expect("row").split('"').next().expect("id");
    assert!(ids.iter().any(|i| i == prod_id));
    let disabled = dashboard
        .post(&format!("/dashboard/api-keys/{prod_id}/disable"), &[])
        .await;
    assert_eq!(disabled.status, 303, "{}", disabled.text);
    let refused = app
        .send(app.request_as(&key, Method::GET, "/api/v1/zoom_oauth_apps"))
        .await;
    assert_eq!(refused.status, 401);
    // The test's own key still works.
    assert_eq!(
        app.send(app.request(Method::GET, "/api/v1/zoom_oauth_apps"))
            .await
            .status,
        200
    );
}

on_both_databases!(another_projects_objects_are_not_found_in_the_dashboard);
async fn another_projects_objects_are_not_found_in_the_dashboard(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, other_key) = app.other_project("other").await;
    let dashboard = app.dashboard().await;
    // The other project's API key, by id, as the other project's own dashboard has it.
    let other_keys = app
        .keeper
        .store
        .list_api_keys(&app.other_project_id("other").await)
        .await
        .expect("keys");
    let other_key_id = &other_keys[0].id;
    let refused = dashboard
        .post(&format!("/dashboard/api-keys/{other_key_id}/disable"), &[])
        .await;
    assert_eq!(refused.status, 404, "{}", refused.text);
    let works = app
        .send(app.request_as(&other_key, Method::GET, "/api/v1/zoom_oauth_apps"))
        .await;
    assert_eq!(works.status, 200, "the other project's key was disabled");
    let malformed = dashboard
        .post("/dashboard/api-keys/nonsense/disable", &[])
        .await;
    assert_eq!(malformed.status, 404);
    // Switching to a project id that does not exist is refused too.
    let switched = dashboard
        .post(
            "/dashboard/project",
            &[("project_id", "prj_0000000000000000")],
        )
        .await;
    assert_eq!(switched.status, 404);
}

on_both_databases!(operators_add_operators_whose_generated_password_is_shown_once);
async fn operators_add_operators_whose_generated_password_is_shown_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let dashboard = app.dashboard().await;
    let added = dashboard
        .post(
            "/dashboard/operators",
            &[("email", "new@example.com"), ("password", "")],
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.text);
    let at = added
        .text
        .find("id=\"new-password\" readonly value=\"")
        .expect("shown")
        + 34;
    let password = added.text[at..]
        .split('"')
        .next()
        .expect("value")
        .to_owned();
    assert_eq!(password.len(), 20);
    assert_eq!(
        sign_in(&app, "new@example.com", &password).await.status,
        303
    );
    let list = dashboard.get("/dashboard/operators").await;
    assert!(list.text.contains("new@example.com") && !list.text.contains(&password));
    // Same rules as the command line, shown next to the fields.
    let again = dashboard
        .post(
            "/dashboard/operators",
            &[("email", "NEW@example.com"), ("password", "")],
        )
        .await;
    assert_eq!(again.status, 400, "{}", again.text);
    assert!(again.text.contains("already exists"), "{}", again.text);
    let short = dashboard
        .post(
            "/dashboard/operators",
            &[("email", "x@example.com"), ("password", "short")],
        )
        .await;
    assert_eq!(short.status, 400);
    assert!(
        short.text.contains("id=\"password-error\""),
        "{}",
        short.text
    );
    assert!(
        short.text.contains("at least 12 characters"),
        "{}",
        short.text
    );
}

/// Helper shared by tests: the app's other project id.
trait OtherProjectId {
    async fn other_project_id(&self, name: &str) -> String;
}

impl OtherProjectId for TestApp {
    async fn other_project_id(&self, name: &str) -> String {
        self.keeper
            .store
            .list_projects()
            .await
            .expect("projects")
            .into_iter()
            .find(|p| p.name == name)
            .expect("project")
            .id
    }
}

/// Every `<form method="post">` action in `html` (entities decoded).
fn post_actions(html: &str) -> Vec<String> {
    html.split("<form")
        .skip(1)
        .filter_map(|tag| {
            let tag = &tag[..tag.find('>')?];
            if !tag.contains("method=\"post\"") {
                return None;
            }
            let at = tag.find("action=\"")? + 8;
            Some(tag[at..].split('"').next()?.replace("&amp;", "&"))
        })
        .collect()
}

/// Every dashboard link in `html` (entities decoded), without fragments.
fn dashboard_links(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| {
            let link = rest.split('"').next()?.replace("&amp;", "&");
            let link = link.split('#').next()?.to_owned();
            (link.starts_with("/dashboard/") && !link.starts_with("/dashboard/static/"))
                .then_some(link)
        })
        .collect()
}

/// What the pages must not contain under the CSP: inline script, inline handlers,
/// inline styles, assets from elsewhere.
fn assert_csp_clean(path: &str, answer: &testkit::Answer) {
    let csp = answer.headers["content-security-policy"]
        .to_str()
        .expect("ascii");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{path}: {csp}"
    );
    assert_eq!(answer.headers["x-frame-options"], "DENY", "{path}");
    let html = answer.text.to_lowercase();
    for script in html.split("<script").skip(1) {
        let tag = &script[..script.find('>').expect("tag ends")];
        assert!(
            tag.contains("src=\"/dashboard/static/"),
            "{path}: inline script"
        );
    }
    assert!(!html.contains(" style="), "{path}: inline style");
    for handler in [
        " onclick=",
        " onload=",
        " onsubmit=",
        " onchange=",
        " onerror=",
    ] {
        assert!(!html.contains(handler), "{path}: inline handler {handler}");
    }
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http://cdn"),
        "{path}"
    );
}

/// A project with one of everything, so every page and form exists.
async fn seeded(backend: Backend) -> Option<TestApp> {
    let extra = keeper::config::Settings {
        allow_private_callback_urls: Some(true),
        ..Default::default()
    };
    let app = spawn_app_with(backend, extra).await?;
    let zoa = app.new_app("crawl-client").await;
    app.connect("crawl-client", json!({})).await;
    let webhook = app
        .send(app.request(Method::POST, "/api/v1/webhooks").json(&json!({
            "url": "http://127.0.0.1:9/hook",
            "triggers": ["zoom_oauth_connection.state_change"],
        })))
        .await;
    assert_eq!(webhook.status, 201, "{}", webhook.text);
    let platform = app
        .send(
            app.request(Method::POST, "/api/v1/bot_platforms")
                .json(&json!({
                    "platform": "recall",
                })),
        )
        .await;
    assert_eq!(platform.status, 201, "{}", platform.text);
    let session = app
        .send(
            app.request(Method::POST, "/api/v1/zoom_oauth_connect_sessions")
                .json(&json!({
                    "zoom_oauth_app_id": zoa["id"],
                    "return_url": "https://app.example.com/done",
                })),
        )
        .await;
    assert_eq!(session.status, 201, "{}", session.text);
    Some(app)
}

on_both_databases!(every_form_refuses_a_missing_or_wrong_csrf_token_and_no_page_breaks_the_csp);
async fn every_form_refuses_a_missing_or_wrong_csrf_token_and_no_page_breaks_the_csp(
    backend: Backend,
) {
    let Some(app) = seeded(backend).await else {
        return;
    };
    let dashboard = app.dashboard().await;
    // Walk every page reachable from the overview (one of each kind of link path).
    let mut queue = vec!["/dashboard/".to_owned()];
    let mut seen = std::collections::BTreeSet::new();
    let mut actions = std::collections::BTreeSet::new();
    while let Some(path) = queue.pop() {
        let shape: String = path.split('?').next().unwrap_or_default().to_owned();
        if !seen.insert(shape) || seen.len() > 60 {
            continue;
        }
        let page = dashboard.get(&path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.text);
        assert_csp_clean(&path, &page);
        actions.extend(post_actions(&page.text));
        queue.extend(dashboard_links(&page.text));
    }
    for expected in [
        "/dashboard/logout",
        "/dashboard/project",
        "/dashboard/projects",
        "/dashboard/operators",
        "/dashboard/api-keys",
    ] {
        assert!(
            actions.contains(expected),
            "{expected} not found in {actions:?}"
        );
    }
    app.operator("second@example.com", PASSWORD).await;
    let second = app.dashboard_as("second@example.com", PASSWORD).await;
    let before = snapshot(&app).await;
    for action in &actions {
        let missing = dashboard.post_raw(action, &[("name", "x")]).await;
        assert_eq!(
            missing.status, 403,
            "{action} without a token: {}",
            missing.text
        );
        assert!(missing.text.contains("nothing was changed"), "{action}");
        let wrong = dashboard
            .post_raw(
                action,
                &[
                    ("csrf", "d3JvbmcgdG9rZW4gd3JvbmcgdG9rZW4gd3Jvbmc"),
                    ("name", "x"),
                ],
            )
            .await;
        assert_eq!(
            wrong.status, 403,
            "{action} with a wrong token: {}",
            wrong.text
        );
    }
    // Another session's token is wrong for this one.
    let crossed = dashboard
        .post_raw(
            "/dashboard/api-keys",
            &[("csrf", second.csrf.as_str()), ("name", "x")],
        )
        .await;
    assert_eq!(crossed.status, 403);
    assert_eq!(
        snapshot(&app).await,
        before,
        "a refused form changed something"
    );
    // Still signed in: the refused logout did not sign out.
    assert_eq!(dashboard.get("/dashboard/").await.status, 200);
    // The sign-in form is protected the same way.
    let client = reqwest::Client::new();
    let forged = client
        .post(app.url("/dashboard/login"))
        .form(&[("email", "ops@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .expect("POST");
    assert_eq!(forged.status().as_u16(), 403);
}

/// What the project holds, as the API shows it.
async fn snapshot(app: &TestApp) -> Vec<String> {
    let mut state = Vec::new();
    for path in [
        "/api/v1/zoom_oauth_apps?page_size=100",
        "/api/v1/zoom_oauth_connections?page_size=100",
        "/api/v1/webhooks?page_size=100",
        "/api/v1/bot_platforms?page_size=100",
        "/api/v1/webhook_secret",
        "/api/v1/project",
    ] {
        let answer = app.send(app.request(Method::GET, path)).await;
        assert_eq!(answer.status, 200, "{path}");
        state.push(answer.text);
    }
    let keys = app
        .keeper
        .store
        .list_api_keys(&app.project_id)
        .await
        .expect("keys");
    state.push(format!(
        "{:?}",
        keys.iter()
            .map(|k| (k.id.clone(), k.disabled_at))
            .collect::<Vec<_>>()
    ));
    state.push(format!(
        "{}",
        app.keeper.store.list_operators().await.expect("ops").len()
    ));
    state.push(format!(
        "{}",
        app.keeper
            .store
            .list_projects()
            .await
            .expect("projects")
            .len()
    ));
    state
}

/// Every `<form method="post">` in `html`: its action and the names of its fields.
fn post_forms(html: &str) -> Vec<(String, Vec<String>)> {
    html.split("<form")
        .skip(1)
        .filter_map(|rest| {
            let body = &rest[..rest.find("</form>").unwrap_or(rest.len())];
            let action = post_actions(&format!("<form{body}")).into_iter().next()?;
            let mut names: Vec<String> = body
                .split("name=\"")
                .skip(1)
                .filter_map(|n| n.split('"').next().map(str::to_owned))
                .filter(|n| n != "csrf" && n != "project")
                .collect();
            names.sort();
            names.dedup();
            Some((action, names))
        })
        .collect()
}

on_both_databases!(no_form_value_makes_a_server_error);
async fn no_form_value_makes_a_server_error(backend: Backend) {
    let Some(app) = seeded(backend).await else {
        return;
    };
    let dashboard = app.dashboard().await;
    let mut queue = vec!["/dashboard/".to_owned()];
    let mut seen = std::collections::BTreeSet::new();
    let mut forms = std::collections::BTreeMap::new();
    while let Some(path) = queue.pop() {
        let shape: String = path.split('?').next().unwrap_or_default().to_owned();
        if !seen.insert(shape) || seen.len() > 60 {
            continue;
        }
        let page = dashboard.get(&path).await;
        for (action, names) in post_forms(&page.text) {
            forms.entry(action).or_insert(names);
        }
        queue.extend(dashboard_links(&page.text));
    }
    forms.remove("/dashboard/logout");
    assert!(forms.len() >= 15, "{forms:?}");
    let long = "x".repeat(20_000);
    // PostgreSQL refuses NUL in text; the rest probe lengths, types and encodings.
    let hostile = [
        "\0",
        "a\0b",
        &long,
        "-1",
        "1e309",
        "{\"a\":",
        "☃ \u{202e}",
        " ",
    ];
    for (action, names) in &forms {
        for value in hostile {
            let fields: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), value)).collect();
            let answer = dashboard.post(action, &fields).await;
            assert!(
                answer.status < 500,
                "{action} with {:?}: {} {}",
                value.chars().take(12).collect::<String>(),
                answer.status,
                answer.text
            );
        }
    }
    // The query strings of the list pages too.
    for page in [
        "/dashboard/connections",
        "/dashboard/meetings",
        "/dashboard/webhooks",
        "/dashboard/connect-sessions",
    ] {
        for query in [
            "?state=%00",
            "?cursor=%00",
            "?page_size=%00",
            "?zoom_oauth_app_id=%00&user_id=%00",
            "?metadata=%00%3D%00",
        ] {
            let answer = dashboard.get(&format!("{page}{query}")).await;
            assert!(
                answer.status < 500,
                "{page}{query}: {} {}",
                answer.status,
                answer.text
            );
        }
    }
    // Sign-in with hostile values is refused, never a server error.
    for value in hostile {
        let answer = sign_in(&app, value, value).await;
        assert!(
            answer.status < 500,
            "sign-in with {value:?}: {}",
            answer.status
        );
    }
}

on_both_databases!(concurrent_wrong_passwords_get_five_tries_between_them);
async fn concurrent_wrong_passwords_get_five_tries_between_them(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.operator("ops@example.com", PASSWORD).await;
    let tries = (0..20).map(|_| sign_in(&app, "ops@example.com", "not the password"));
    let answers = futures::future::join_all(tries).await;
    let refused = answers.iter().filter(|a| a.status == 401).count();
    let throttled = answers.iter().filter(|a| a.status == 429).count();
    assert_eq!(
        refused + throttled,
        20,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert_eq!(
        refused, 5,
        "five guesses between them, however many at once"
    );
    assert_eq!(sign_in(&app, "ops@example.com", PASSWORD).await.status, 429);
}

on_both_databases!(a_form_made_for_another_project_changes_nothing);
async fn a_form_made_for_another_project_changes_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (other_id, _) = app.other_project("prod").await;
    let tab_a = app.dashboard().await;
    // Another tab of the same session switches to "prod".
    let mut tab_b = tab_a.clone();
    let switched = tab_b
        .post("/dashboard/project", &[("project_id", other_id.as_str())])
        .await;
    assert_eq!(switched.status, 303);
    tab_b.project = other_id.clone();
    // Tab A's page was made for the test project: its form is refused.
    let refused = tab_a
        .post("/dashboard/api-keys", &[("name", "meant for test")])
        .await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert!(
        refused.text.contains("nothing was changed"),
        "{}",
        refused.text
    );
    for project in [&app.project_id, &other_id] {
        let keys = app.keeper.store.list_api_keys(project).await.expect("keys");
        assert!(keys.iter().all(|k| k.name != "meant for test"));
    }
    // Reloaded, the form names prod and works there.
    let made = tab_b
        .post("/dashboard/api-keys", &[("name", "meant for prod")])
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    let keys = app
        .keeper
        .store
        .list_api_keys(&other_id)
        .await
        .expect("keys");
    assert!(keys.iter().any(|k| k.name == "meant for prod"));
    // A sign-in or a next address with a control character is no server error.
    let next = tab_b.get("/dashboard/login?next=/dashboard/%01").await;
    assert_eq!(next.status, 303);
    assert_eq!(Dashboard::location(&next), "/dashboard/");
}
