//! The dashboard's Zoom apps, connections and meetings pages (DESIGN.md §13), over
//! plain HTTP as a browser without JavaScript uses them, on both databases: each
//! action goes through the API's domain functions, shows the API's sentences, and
//! never shows a token.

use reqwest::Method;
use serde_json::{json, Value};
use testkit::dashboard::Dashboard;
use testkit::{on_both_databases, spawn_app, Answer, Backend, TestApp, REDIRECT_URI};
use zoom_sim::{SimAppPatch, SimMeeting};

on_both_databases!(
    adding_editing_and_deleting_an_app_show_the_apis_sentences,
    connections_are_filtered_as_the_api_filters_them,
    a_connection_page_shows_its_log_and_a_masked_test_token,
    a_disconnected_connection_shows_why,
    a_connection_is_edited_and_mints_each_kind_of_test_token,
    meeting_lookup_shows_the_host_and_what_a_bot_would_get,
);

const CLIENT: &str = "dash-client";
const SECRET: &str = "secret-of-dash-client";

/// `text` with the HTML escapes askama writes (named and numeric) turned back into
/// characters.
fn unescaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';').filter(|e| *e <= 8) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The page's text content of the element with `id` (up to its first closing tag).
fn element<'t>(html: &'t str, id: &str) -> &'t str {
    let marker = format!("id=\"{id}\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no element #{id} in {html}"));
    let rest = &html[at..];
    let start = rest.find('>').map_or(0, |i| i + 1);
    let end = rest[start..].find("</").map_or(rest.len(), |i| start + i);
    &rest[start..end]
}

/// What the CSP forbids and a crawl must not find: `style=` attributes, inline
/// scripts, `on…=` event attributes.
fn assert_clean(page: &Answer) {
    let html = &page.text;
    assert!(!html.contains("style="), "a style attribute: {html}");
    for (at, _) in html.match_indices("<script") {
        let tag = &html[at..at + html[at..].find('>').expect("a closed tag")];
        assert!(tag.contains(" src="), "an inline script: {tag}");
    }
    for name in attribute_names(html) {
        assert!(!name.starts_with("on"), "an event attribute {name}: {html}");
    }
}

/// Every attribute name of every tag in `html`, reading quoted values as values.
fn attribute_names(html: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = html.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'<' || !bytes.get(i + 1).is_some_and(u8::is_ascii_alphabetic) {
            i += 1;
            continue;
        }
        // The tag name.
        i += 1;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
            i += 1;
        }
        // Its attributes.
        loop {
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if i >= bytes.len() || bytes[i] == b'>' || bytes[i] == b'/' {
                break;
            }
            let start = i;
            while i < bytes.len()
                && !bytes[i].is_ascii_whitespace()
                && !matches!(bytes[i], b'=' | b'>')
            {
                i += 1;
            }
            names.push(html[start..i].to_ascii_lowercase());
            if i < bytes.len() && bytes[i] == b'=' {
                i += 1;
                match bytes.get(i) {
                    Some(&q) if q == b'"' || q == b'\'' => {
                        i += 1;
                        while i < bytes.len() && bytes[i] != q {
                            i += 1;
                        }
                        i += 1;
                    }
                    _ => {
                        while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>'
                        {
                            i += 1;
                        }
                    }
                }
            }
        }
    }
    names
}

/// GET `path`, expecting 200 and a clean page.
async fn page(dashboard: &Dashboard<'_>, path: &str) -> Answer {
    let answer = dashboard.get(path).await;
    assert_eq!(answer.status, 200, "{path}: {}", answer.text);
    assert_clean(&answer);
    answer
}

/// The API's error sentence for a request.
fn sentence(answer: &Answer) -> String {
    answer.json["error"].as_str().expect("an error").to_owned()
}

async fn connect(app: &TestApp, client_id: &str, extra: Value) -> (String, String) {
    let (user, a) = app.connect(client_id, extra).await;
    assert_eq!(a.status, 201, "{}", a.text);
    (user, a.json["id"].as_str().expect("id").to_owned())
}

/// A connection in another project, made through that project's API key.
async fn other_projects_connection(app: &TestApp) -> String {
    let (_, key) = app.other_project("elsewhere").await;
    app.zoom_app("other-client", "other-secret").await;
    let created = app
        .send(
            app.request_as(&key, Method::POST, "/api/v1/zoom_oauth_apps")
                .json(&json!({"client_id": "other-client", "client_secret": "other-secret"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let user = app.zoom_user(None).await;
    let code = app
        .auth_code(
            "other-client",
            &user,
            Some(testkit::scopes_asked_for(&json!({}))),
        )
        .await;
    let connected = app
        .send(
            app.request_as(&key, Method::POST, "/api/v1/zoom_oauth_connections")
                .json(&json!({"authorization_code": code, "redirect_uri": REDIRECT_URI})),
        )
        .await;
    assert_eq!(connected.status, 201, "{}", connected.text);
    connected.json["id"].as_str().expect("id").to_owned()
}

async fn adding_editing_and_deleting_an_app_show_the_apis_sentences(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.zoom_app(CLIENT, SECRET).await;
    let dashboard = app.dashboard().await;
    let empty = page(&dashboard, "/dashboard/apps").await;
    assert!(empty.text.contains("id=\"add-app\""), "{}", empty.text);

    // The API's own sentence for a secret Zoom refuses.
    let api_refusal = app
        .create_app(json!({"client_id": CLIENT, "client_secret": "wrong"}))
        .await;
    api_refusal.assert_error(400, "invalid_client_credentials");
    let wrong = dashboard
        .post(
            "/dashboard/apps",
            &[
                ("client_id", CLIENT),
                ("client_secret", "wrong"),
                ("kind", "user_level"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 400, "{}", wrong.text);
    assert_clean(&wrong);
    assert_eq!(
        unescaped(element(&wrong.text, "client_secret-error")),
        sentence(&api_refusal)
    );
    assert!(
        !wrong.text.contains("wrong\""),
        "the secret is not sent back"
    );
    assert!(app.all_app_ids().await.is_empty(), "nothing created");

    // Field problems go next to their fields; a blank form changes nothing.
    let blank = dashboard
        .post(
            "/dashboard/apps",
            &[("client_id", " "), ("client_secret", SECRET)],
        )
        .await;
    assert_eq!(blank.status, 400, "{}", blank.text);
    assert!(element(&blank.text, "client_id-error").contains("Must not be empty"));
    // Without the CSRF token nothing is created either.
    let forged = dashboard
        .post_raw(
            "/dashboard/apps",
            &[("client_id", CLIENT), ("client_secret", SECRET)],
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.text);
    assert!(app.all_app_ids().await.is_empty(), "nothing created");

    let added = dashboard
        .post(
            "/dashboard/apps",
            &[
                ("client_id", CLIENT),
                ("client_secret", SECRET),
                ("webhook_secret", ""),
                ("kind", "user_level"),
            ],
        )
        .await;
    assert_eq!(added.status, 303, "{}", added.text);
    let ids = app.all_app_ids().await;
    assert_eq!(ids.len(), 1);
    let zoa = &ids[0];
    assert_eq!(
        Dashboard::location(&added),
        format!("/dashboard/apps/{zoa}")
    );
    let api = app.get_app(zoa).await.json;
    assert_eq!(
        api["has_webhook_secret"], false,
        "an empty input is no secret"
    );
    let shown = page(&dashboard, &format!("/dashboard/apps/{zoa}")).await;
    let webhook_url = api["webhook_url"].as_str().expect("webhook_url");
    let redirect_url = api["connect_redirect_url"].as_str().expect("redirect url");
    assert!(
        shown.text.contains(&format!(
            "id=\"webhook-url\" readonly value=\"{webhook_url}\""
        )),
        "{}",
        shown.text
    );
    assert!(
        shown.text.contains(&format!(
            "id=\"connect-redirect-url\" readonly value=\"{redirect_url}\""
        )),
        "{}",
        shown.text
    );
    assert!(shown.text.contains("data-copy=\"webhook-url\""));
    let listed = page(&dashboard, "/dashboard/apps").await;
    assert!(listed.text.contains(&format!("data-app-id=\"{zoa}\"")));
    assert!(listed.text.contains(CLIENT));

    // A new client secret Zoom refuses: the API's sentence, the old one kept.
    let refused = dashboard
        .post(
            &format!("/dashboard/apps/{zoa}"),
            &[("client_secret", "not-the-secret")],
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_clean(&refused);
    assert_eq!(
        unescaped(element(&refused.text, "client_secret-error")),
        sentence(&api_refusal)
    );
    // The kept secret still exchanges codes with Zoom.
    let (_, connection) = connect(&app, CLIENT, json!({})).await;

    // Settings that Zoom accepts are saved.
    let saved = dashboard
        .post(
            &format!("/dashboard/apps/{zoa}"),
            &[
                ("webhook_secret", "the-secret-token"),
                ("client_secret", ""),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.text);
    assert_eq!(app.get_app(zoa).await.json["has_webhook_secret"], true);
    app.sim
        .control()
        .update_app(
            CLIENT,
            &SimAppPatch {
                client_secret: Some("rotated-secret".into()),
                ..Default::default()
            },
        )
        .await
        .expect("rotate at Zoom");
    let rotated = dashboard
        .post(
            &format!("/dashboard/apps/{zoa}"),
            &[("client_secret", "rotated-secret")],
        )
        .await;
    assert_eq!(rotated.status, 303, "{}", rotated.text);

    // Delete while a connection exists: the API's 409 sentence; the app stays.
    let api_conflict = app.delete_app(zoa).await;
    api_conflict.assert_error(409, "app_has_connections");
    let kept = dashboard
        .post(&format!("/dashboard/apps/{zoa}/delete"), &[])
        .await;
    assert_eq!(kept.status, 409, "{}", kept.text);
    assert_clean(&kept);
    assert_eq!(
        unescaped(element(&kept.text, "delete-error")),
        sentence(&api_conflict)
    );
    assert_eq!(app.get_app(zoa).await.status, 200);

    // Another project's app, or a malformed id: 404 on every path.
    let other = other_projects_connection(&app).await;
    let other_app = app
        .keeper
        .store
        .connection_by_id(&other)
        .await
        .expect("read")
        .expect("exists")
        .app_id;
    for path in [
        format!("/dashboard/apps/{other_app}"),
        "/dashboard/apps/nonsense".to_owned(),
    ] {
        assert_eq!(dashboard.get(&path).await.status, 404, "{path}");
        let edit = dashboard.post(&path, &[("webhook_secret", "x")]).await;
        assert_eq!(edit.status, 404, "{path}");
        let delete = dashboard.post(&format!("{path}/delete"), &[]).await;
        assert_eq!(delete.status, 404, "{path}");
    }
    assert_eq!(app.get_app(zoa).await.status, 200);

    // Without connections it goes.
    let gone = dashboard
        .post(&format!("/dashboard/connections/{connection}/delete"), &[])
        .await;
    assert_eq!(gone.status, 303, "{}", gone.text);
    assert_eq!(Dashboard::location(&gone), "/dashboard/connections");
    let deleted = dashboard
        .post(&format!("/dashboard/apps/{zoa}/delete"), &[])
        .await;
    assert_eq!(deleted.status, 303, "{}", deleted.text);
    assert_eq!(Dashboard::location(&deleted), "/dashboard/apps");
    assert_eq!(app.get_app(zoa).await.status, 404);
    assert_eq!(
        dashboard
            .get(&format!("/dashboard/apps/{zoa}"))
            .await
            .status,
        404
    );
}

/// The ids of the connection rows a list page shows.
fn listed(page: &Answer) -> Vec<String> {
    let mut ids: Vec<String> = page
        .text
        .match_indices("data-connection-id=\"")
        .map(|(at, m)| {
            let rest = &page.text[at + m.len()..];
            rest[..rest.find('"').expect("closed")].to_owned()
        })
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&String]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| (*s).clone()).collect();
    v.sort();
    v
}

async fn connections_are_filtered_as_the_api_filters_them(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let first = app.new_app(CLIENT).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let second = app.new_app("second-client").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // Tokens that need a refresh at every use, so a revoked grant shows at once.
    app.zoom_token_ttl(60).await;
    let (acme_user, acme) = connect(
        &app,
        CLIENT,
        json!({"zoom_oauth_app_id": first, "metadata": {"customer": "acme"}}),
    )
    .await;
    let (gone_user, gone) = connect(
        &app,
        CLIENT,
        json!({"zoom_oauth_app_id": first, "metadata": {"customer": "globex", "plan": "acme"}}),
    )
    .await;
    let (_, elsewhere) = connect(&app, "second-client", json!({"zoom_oauth_app_id": second})).await;
    app.sim
        .control()
        .deauthorize(&gone_user, CLIENT)
        .await
        .expect("deauthorize");
    app.access_token(&gone)
        .await
        .assert_error(409, "connection_disconnected");

    let dashboard = app.dashboard().await;
    let all = page(&dashboard, "/dashboard/connections").await;
    assert_eq!(listed(&all), sorted(&[&acme, &gone, &elsewhere]));
    assert!(all.text.contains("badge state-disconnected"));
    assert!(all.text.contains("badge state-connected"));

    for (query, want) in [
        ("state=disconnected", vec![&gone]),
        ("state=connected", vec![&acme, &elsewhere]),
        (
            &format!("zoom_oauth_app_id={second}") as &str,
            vec![&elsewhere],
        ),
        (&format!("zoom_oauth_app_id={first}"), vec![&acme, &gone]),
        (&format!("user_id={acme_user}"), vec![&acme]),
        (&format!("user_id={acme_user}&state=disconnected"), vec![]),
        ("metadata=customer%3Dacme", vec![&acme]),
        ("metadata=plan%3Dacme", vec![&gone]),
        ("metadata=customer%3Dnobody", vec![]),
        ("page_size=1&state=connected", vec![&elsewhere]),
    ] {
        let shown = page(&dashboard, &format!("/dashboard/connections?{query}")).await;
        assert_eq!(listed(&shown), sorted(&want), "{query}");
    }
    // The pager keeps the filters.
    let first_page = page(
        &dashboard,
        "/dashboard/connections?page_size=1&state=connected",
    )
    .await;
    let next = unescaped(
        first_page
            .text
            .split("href=\"")
            .find(|s| s.contains("id=\"next-page\""))
            .and_then(|s| s.split('"').next())
            .expect("a next link"),
    );
    assert!(next.contains("state=connected"), "{next}");
    let second_page = page(&dashboard, &next).await;
    assert_eq!(listed(&second_page), vec![acme.clone()]);

    // Bad filters: the API's sentence, a 400, no rows.
    let api = app
        .send(app.request(Method::GET, "/api/v1/zoom_oauth_connections?state=asleep"))
        .await;
    api.assert_error(400, "invalid_request");
    let bad = dashboard.get("/dashboard/connections?state=asleep").await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_clean(&bad);
    assert_eq!(
        unescaped(element(&bad.text, "filter-error")),
        sentence(&api)
    );
    assert!(listed(&bad).is_empty());
    let no_pair = dashboard.get("/dashboard/connections?metadata=acme").await;
    assert_eq!(no_pair.status, 400, "{}", no_pair.text);
    assert!(element(&no_pair.text, "metadata-error").contains("key=value"));

    // Another project's connection is not found, as in the API.
    let other = other_projects_connection(&app).await;
    let all = page(&dashboard, "/dashboard/connections").await;
    assert!(!listed(&all).contains(&other));
    assert_eq!(
        app.connection_call(Method::GET, &other, "").await.status,
        404
    );
    for path in [
        format!("/dashboard/connections/{other}"),
        "/dashboard/connections/zoc_nonsense".to_owned(),
    ] {
        let answer = dashboard.get(&path).await;
        assert_eq!(answer.status, 404, "{path}");
        assert_clean(&answer);
        for action in ["", "/sync", "/delete"] {
            let posted = dashboard.post(&format!("{path}{action}"), &[]).await;
            assert_eq!(posted.status, 404, "{path}{action}");
        }
    }
    assert!(app
        .keeper
        .store
        .connection_by_id(&other)
        .await
        .expect("read")
        .is_some());
}

async fn a_connection_page_shows_its_log_and_a_masked_test_token(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.new_app(CLIENT).await;
    let (user, id) = connect(&app, CLIENT, json!({"metadata": {"team": "sales"}})).await;
    let dashboard = app.dashboard().await;
    let path = format!("/dashboard/connections/{id}");
    let shown = page(&dashboard, &path).await;
    assert_eq!(element(&shown.text, "connection-state"), "connected");
    assert!(!shown.text.contains("id=\"connection-failure\""));
    assert_eq!(element(&shown.text, "connection-user"), user);
    assert!(shown.text.contains("data-refresh=\"5\""), "{}", shown.text);
    assert!(shown.text.contains("data-event-kind=\"created\""));
    assert!(unescaped(&shown.text).contains(r#"{"team":"sales"}"#));

    let minted = dashboard.post(&path, &[]).await;
    assert_eq!(minted.status, 200, "{}", minted.text);
    assert_clean(&minted);
    assert_eq!(element(&minted.text, "minted-kind"), "access_token");
    assert!(element(&minted.text, "minted-expires").contains("<time datetime="));
    // The token the API hands out now is the one just minted (it is cached): the
    // page shows its first characters and length, never the token.
    let api = app.access_token(&id).await;
    assert_eq!(api.status, 200, "{}", api.text);
    let token = api.json["token"].as_str().expect("token");
    assert!(token.chars().count() > 12);
    assert!(!minted.text.contains(token), "the page shows the token");
    let start: String = token.chars().take(6).collect();
    assert_eq!(
        element(&minted.text, "minted-masked"),
        format!("{start}… ({} characters)", token.chars().count())
    );
    let expires = api.json["expires_at"].as_str().expect("expiry");
    let shown_at: String = expires.chars().take(19).collect();
    assert!(
        minted.text.contains(&format!("datetime=\"{shown_at}Z\"")),
        "the expiry {expires} in {}",
        minted.text
    );
    let again = page(&dashboard, &path).await;
    assert!(!again.text.contains(token));

    let synced = dashboard.post(&format!("{path}/sync"), &[]).await;
    assert_eq!(synced.status, 303, "{}", synced.text);
    let after = page(&dashboard, Dashboard::location(&synced)).await;
    assert!(after.text.contains("id=\"notice\""), "{}", after.text);

    // The events list pages like the API's.
    let paged = page(&dashboard, &format!("{path}?page_size=1")).await;
    assert_eq!(paged.text.matches("data-event-kind=").count(), 1);
}

async fn a_connection_is_edited_and_mints_each_kind_of_test_token(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.new_app(CLIENT).await;
    let (_, id) = connect(&app, CLIENT, json!({"metadata": {"team": "sales"}})).await;
    // Another connection of the app holds this deduplication key.
    connect(&app, CLIENT, json!({"deduplication_key": "taken"})).await;
    let dashboard = app.dashboard().await;
    let path = format!("/dashboard/connections/{id}");
    let edit = format!("{path}/edit");
    let before = app.connection(&id).await;

    // Refusals show the API's sentences next to their fields and change nothing.
    for (fields, field, status) in [
        (
            vec![
                ("metadata", "{not json"),
                ("is_local_recording_token_supported", "true"),
            ],
            "metadata",
            400,
        ),
        (
            vec![
                ("metadata", "[1, 2]"),
                ("is_local_recording_token_supported", "true"),
            ],
            "metadata",
            400,
        ),
        (
            vec![
                ("metadata", ""),
                ("deduplication_key", "taken"),
                ("is_local_recording_token_supported", "true"),
            ],
            "",
            409,
        ),
        // Both capabilities off is refused as in the API.
        (vec![("metadata", "")], "", 400),
    ] {
        let refused = dashboard.post(&edit, &fields).await;
        assert_eq!(refused.status, status, "{fields:?}: {}", refused.text);
        assert_clean(&refused);
        assert!(
            refused.text.contains("id=\"edit-error\""),
            "{}",
            refused.text
        );
        if !field.is_empty() {
            assert!(
                refused.text.contains(&format!("id=\"{field}-error\"")),
                "{}",
                refused.text
            );
        }
        assert_eq!(
            app.connection(&id).await,
            before,
            "{fields:?} changed the connection"
        );
    }

    let saved = dashboard
        .post(
            &edit,
            &[
                ("metadata", r#"{"team": "support", "seat": "4"}"#),
                ("deduplication_key", "crm-42"),
                ("is_local_recording_token_supported", "true"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.text);
    assert_eq!(Dashboard::location(&saved), format!("{path}?saved=1"));
    let after = app.connection(&id).await;
    assert_eq!(after["metadata"], json!({"team": "support", "seat": "4"}));
    assert_eq!(after["deduplication_key"], "crm-42");
    // Emptied fields clear.
    let cleared = dashboard
        .post(
            &edit,
            &[
                ("metadata", " "),
                ("is_local_recording_token_supported", "true"),
            ],
        )
        .await;
    assert_eq!(cleared.status, 303, "{}", cleared.text);
    let after = app.connection(&id).await;
    assert_eq!(after["metadata"], Value::Null);
    assert_eq!(after["deduplication_key"], Value::Null);

    // A ZAK: minted, masked, no expiry from Zoom; an unknown kind is refused.
    let zak = dashboard.post(&path, &[("kind", "zak")]).await;
    assert_eq!(zak.status, 200, "{}", zak.text);
    assert_eq!(element(&zak.text, "minted-kind"), "zak_token");
    assert!(element(&zak.text, "minted-masked").contains('…'));
    let api_zak = app
        .send(app.request(
            Method::POST,
            &format!("/api/v1/zoom_oauth_connections/{id}/zak_token"),
        ))
        .await;
    assert_eq!(api_zak.status, 200, "{}", api_zak.text);
    assert!(!zak
        .text
        .contains(api_zak.json["token"].as_str().expect("token")));
    // Onbehalf is off for this connection: the API's sentence.
    let onbehalf = dashboard.post(&path, &[("kind", "onbehalf")]).await;
    assert_eq!(onbehalf.status, 400, "{}", onbehalf.text);
    assert!(
        onbehalf.text.contains("id=\"action-error\""),
        "{}",
        onbehalf.text
    );
    let unknown = dashboard.post(&path, &[("kind", "everything")]).await;
    assert_eq!(unknown.status, 400);
    assert!(
        unknown.text.contains("access_token, zak or onbehalf"),
        "{}",
        unknown.text
    );
    // An unknown connection cannot be edited.
    let missing = dashboard
        .post(
            "/dashboard/connections/zoc_0000000000000000/edit",
            &[("metadata", "")],
        )
        .await;
    assert_eq!(missing.status, 404);
}

async fn a_disconnected_connection_shows_why(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.new_app(CLIENT).await;
    app.zoom_token_ttl(60).await;
    let (user, id) = connect(&app, CLIENT, json!({})).await;
    app.sim
        .control()
        .deauthorize(&user, CLIENT)
        .await
        .expect("deauthorize");
    let dashboard = app.dashboard().await;
    let path = format!("/dashboard/connections/{id}");
    let refused = dashboard.post(&path, &[]).await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert_clean(&refused);
    assert_eq!(element(&refused.text, "connection-state"), "disconnected");
    // The API answers the same sentence from now on.
    let api = app.access_token(&id).await;
    api.assert_error(409, "connection_disconnected");
    assert_eq!(
        unescaped(element(&refused.text, "action-error")),
        sentence(&api)
    );
    assert!(!refused.text.contains("id=\"minted-token\""));

    let shown = page(&dashboard, &path).await;
    assert_eq!(element(&shown.text, "connection-state"), "disconnected");
    let cause = app.connection(&id).await["connection_failure_data"].clone();
    let failure = unescaped(element(&shown.text, "connection-failure"));
    assert!(
        failure.contains(cause["code"].as_str().expect("code")),
        "{failure}"
    );
    assert!(
        unescaped(&shown.text).contains(cause["error"].as_str().expect("error")),
        "{}",
        shown.text
    );
    assert!(shown.text.contains("data-event-kind=\"disconnected\""));

    // A sync of a disconnected connection: the API's sentence.
    let sync = dashboard.post(&format!("{path}/sync"), &[]).await;
    assert_eq!(sync.status, 409, "{}", sync.text);
    let api_sync = app.connection_call(Method::POST, &id, "/sync").await;
    api_sync.assert_error(409, "connection_disconnected");
    assert_eq!(
        unescaped(element(&sync.text, "action-error")),
        sentence(&api_sync)
    );
}

async fn meeting_lookup_shows_the_host_and_what_a_bot_would_get(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.new_app(CLIENT).await;
    let host = app.zoom_user(None).await;
    let number = app
        .sim
        .control()
        .create_meeting(&host, &SimMeeting::default())
        .await
        .expect("sim meeting")
        .id;
    let a = app.connect_user(CLIENT, &host, json!({})).await;
    assert_eq!(a.status, 201, "{}", a.text);
    let connection = a.json["id"].as_str().expect("id").to_owned();
    let (_stop, stopping) = tokio::sync::watch::channel(false);
    keeper::meeting_sync::run_once(&app.keeper, &stopping)
        .await
        .expect("sync round");

    let dashboard = app.dashboard().await;
    let link = format!("https://us05web.zoom.us/j/{number}?pwd=s3cret");
    let found = dashboard
        .post(
            "/dashboard/meetings",
            &[("meeting_url", link.as_str()), ("sdk_role", "0")],
        )
        .await;
    assert_eq!(found.status, 200, "{}", found.text);
    assert_clean(&found);
    assert_eq!(element(&found.text, "lookup-meeting"), number.to_string());
    assert!(
        found.text.contains(&format!(
            "href=\"/dashboard/connections/{connection}\" id=\"host-{connection}\""
        )),
        "{}",
        found.text
    );
    assert_eq!(element(&found.text, "token-app_privilege_token"), "minted");
    assert_eq!(element(&found.text, "token-sdk_signature"), "minted");
    assert!(found.text.contains("id=\"no-problems\""), "{}", found.text);
    // The pasted link comes back without its query: the passcode is not on the page.
    assert!(!found.text.contains("s3cret"), "{}", found.text);
    // The same request through the API: what it hands out is not on the page.
    let api = app
        .send(
            app.request(Method::POST, "/api/v1/zoom_join_tokens")
                .json(&json!({"meeting_url": link, "sdk_signature": {"role": 0}})),
        )
        .await;
    assert_eq!(api.status, 200, "{}", api.text);
    let token = api.json["app_privilege_token"].as_str().expect("token");
    assert!(!found.text.contains(token));
    let jwt = api.json["sdk_signature"]["jwt"].as_str().expect("jwt");
    assert!(!found.text.contains(jwt));
    // The index below lists the meeting.
    assert!(found
        .text
        .contains(&format!("data-meeting-id=\"{number}\"")));

    // A meeting no connection hosts: the API's problem row. A bare number is a link.
    let unknown = dashboard
        .post("/dashboard/meetings", &[("meeting_url", "987 6543 210")])
        .await;
    assert_eq!(unknown.status, 200, "{}", unknown.text);
    assert_clean(&unknown);
    let api_unknown = app
        .send(
            app.request(Method::POST, "/api/v1/zoom_join_tokens")
                .json(&json!({"meeting_url": "https://zoom.us/j/9876543210"})),
        )
        .await;
    let problem = api_unknown.json["problems"][0]["message"]
        .as_str()
        .expect("a problem");
    assert!(problem.contains("No connection hosts meeting 9876543210"));
    assert!(
        unescaped(&unknown.text).contains(problem),
        "{}",
        unknown.text
    );
    assert!(unknown.text.contains("data-problem=\"no_host_connection\""));
    assert_eq!(element(&unknown.text, "token-app_privilege_token"), "null");

    // A link that names no meeting: the API's field sentence, 400.
    let api_bad = app
        .send(
            app.request(Method::POST, "/api/v1/zoom_join_tokens")
                .json(&json!({"meeting_url": "https://example.com/j/123456789"})),
        )
        .await;
    api_bad.assert_error(400, "invalid_meeting_url");
    let bad = dashboard
        .post(
            "/dashboard/meetings",
            &[("meeting_url", "https://example.com/j/123456789")],
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_clean(&bad);
    assert_eq!(
        unescaped(element(&bad.text, "meeting_url-error")),
        api_bad.field_problems("meeting_url").join(" ")
    );
    assert!(!bad.text.contains("id=\"lookup-result\""));

    // The index, filtered as the API filters it.
    let listed = page(
        &dashboard,
        &format!("/dashboard/meetings?zoom_oauth_connection_id={connection}"),
    )
    .await;
    assert!(listed
        .text
        .contains(&format!("data-meeting-id=\"{number}\"")));
    let none = page(&dashboard, "/dashboard/meetings?meeting_id=9876543210").await;
    assert!(none.text.contains("id=\"no-meetings\""));
    let refused = dashboard.get("/dashboard/meetings?meeting_id=12").await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(element(&refused.text, "meeting_id-error").contains("9 to 11 digits"));
}

#[test]
fn the_page_check_finds_what_the_csp_forbids() {
    let answer = |html: &str| Answer {
        status: 200,
        headers: Default::default(),
        text: html.to_owned(),
        json: Value::Null,
    };
    assert_clean(&answer(
        r#"<p data-confirm="Delete it? onclick=no" title='a > b'>on=fine</p><script src="/x.js" defer></script>"#,
    ));
    for bad in [
        r#"<p style="color: red">x</p>"#,
        r#"<script>alert(1)</script>"#,
        r#"<button type="button" onclick="go()">x</button>"#,
        r#"<body ONLOAD=go()>"#,
    ] {
        let page = answer(bad);
        assert!(
            std::panic::catch_unwind(|| assert_clean(&page)).is_err(),
            "{bad} passed"
        );
    }
}
