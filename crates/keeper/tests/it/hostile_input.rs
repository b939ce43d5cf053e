//! Hostile input at the HTTP edge, on SQLite and PostgreSQL: bodies that are not
//! JSON objects, NUL characters, made-up methods and paths, over-long URLs, large
//! bodies refused before they are read, and clients that give up on requests
//! half-way. Each is a clear 4xx (or, for a signed Zoom event, a 200) that changes
//! nothing, never a 500 or a broken connection.

use std::collections::BTreeSet;
use std::time::Duration;

use keeper::config::Settings;
use rand::{Rng as _, SeedableRng as _};
use reqwest::Method;
use serde_json::{json, Value};
use testkit::{
    captured_logs, on_both_databases, spawn_app, spawn_app_with, Answer, Backend, TestApp,
};

on_both_databases!(
    json_arrays_are_not_bodies,
    nul_is_refused_in_bodies_and_filters,
    signed_zoom_events_with_nul_are_answered_200,
    answers_given_before_the_body_is_read_reach_the_client,
    cancelled_requests_leave_nothing_half_written,
);

const CLIENT: &str = "edge-client";
const CLIENT_SECRET: &str = "secret-of-edge-client";
const WEBHOOK_SECRET: &str = "whsec-of-edge-client";

/// A service with one app (with a webhook secret) registered at the simulator.
/// Returns the app's JSON.
async fn with_app(app: &TestApp) -> Value {
    app.zoom_app(CLIENT, CLIENT_SECRET).await;
    let a = app
        .create_app(json!({
            "client_id": CLIENT,
            "client_secret": CLIENT_SECRET,
            "webhook_secret": WEBHOOK_SECRET,
        }))
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    a.json
}

/// Connects a new simulated user with `extra` fields; returns (user id, connection).
async fn connect(app: &TestApp, extra: Value) -> (String, Value) {
    let (user, a) = app.connect(CLIENT, extra).await;
    assert_eq!(a.status, 201, "{}", a.text);
    (user, a.json)
}

async fn get(app: &TestApp, path: &str) -> Value {
    let a = app.send(app.request(Method::GET, path)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.json
}

/// Sends `body` verbatim as JSON.
async fn send_raw(app: &TestApp, method: Method, path: &str, body: &str) -> Answer {
    app.send(
        app.request(method, path)
            .header("content-type", "application/json")
            .body(body.to_owned()),
    )
    .await
}

async fn json_arrays_are_not_bodies(backend: Backend) {
    let Some(app) = spawn_app_with(
        backend,
        Settings {
            allow_private_callback_urls: Some(true),
            ..Settings::default()
        },
    )
    .await
    else {
        return;
    };
    let zoa = with_app(&app).await;
    let zoa_id = zoa["id"].as_str().expect("id");
    let (_, conn) = connect(
        &app,
        json!({"metadata": {"team": "blue"}, "deduplication_key": "bot-1"}),
    )
    .await;
    let conn_path = format!(
        "/api/v1/zoom_oauth_connections/{}",
        conn["id"].as_str().expect("id")
    );
    let hook = app
        .send(
            app.request(Method::POST, "/api/v1/webhooks").json(
                &json!({"url": "http://127.0.0.1:9/hook", "triggers": ["zoom_oauth_connection.state_change"]}),
            ),
        )
        .await;
    assert_eq!(hook.status, 201, "{}", hook.text);
    let hook_path = format!("/api/v1/webhooks/{}", hook.json["id"].as_str().expect("id"));
    let app_path = format!("/api/v1/zoom_oauth_apps/{zoa_id}");

    let refused = |a: Answer| {
        a.assert_error(400, "invalid_request");
        assert_eq!(
            a.json["error"], "The request body must be a JSON object.",
            "{}",
            a.text
        );
        assert_eq!(a.field_problems("body"), vec!["Must be a JSON object."]);
    };
    // PATCH a connection with [null, null]: would clear metadata and deduplication_key.
    refused(send_raw(&app, Method::PATCH, &conn_path, "[null,null]").await);
    let after = get(&app, &conn_path).await;
    assert_eq!(after["metadata"], json!({"team": "blue"}));
    assert_eq!(after["deduplication_key"], "bot-1");
    assert_eq!(after["updated_at"], conn["updated_at"]);

    // PATCH an app with [null, null, null]: would remove its webhook secret.
    refused(send_raw(&app, Method::PATCH, &app_path, "[null,null,null]").await);
    let after = get(&app, &app_path).await;
    assert_eq!(after["has_webhook_secret"], true);
    assert_eq!(after["updated_at"], zoa["updated_at"]);

    // PATCH a webhook with [null, null, false]: would deactivate it.
    refused(send_raw(&app, Method::PATCH, &hook_path, "[null,null,false]").await);
    let after = get(&app, &hook_path).await;
    assert_eq!(after["is_active"], true);
    assert_eq!(after["updated_at"], hook.json["updated_at"]);

    // POST ["id", "secret"]: would create an app.
    app.zoom_app("array-client", "array-secret").await;
    refused(
        send_raw(
            &app,
            Method::POST,
            "/api/v1/zoom_oauth_apps",
            r#"["array-client","array-secret"]"#,
        )
        .await,
    );
    assert_eq!(app.all_app_ids().await, vec![zoa_id.to_owned()]);

    // Nor are strings, numbers or null bodies.
    for body in [r#""x""#, "1", "null", "true"] {
        refused(send_raw(&app, Method::PATCH, &conn_path, body).await);
    }
}

async fn nul_is_refused_in_bodies_and_filters(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let zoa = with_app(&app).await;
    let zoa_id = zoa["id"].as_str().expect("id");
    let (user, conn) = connect(
        &app,
        json!({"metadata": {"team": "blue"}, "deduplication_key": "bot-1"}),
    )
    .await;
    let conn_id = conn["id"].as_str().expect("id");
    let conn_path = format!("/api/v1/zoom_oauth_connections/{conn_id}");

    // JSON bodies: metadata values and keys, deduplication_key, nested user ids.
    for (body, field) in [
        (json!({"metadata": {"team": "bl\u{0}ue"}}), "metadata.team"),
        (json!({"metadata": {"te\u{0}am": "blue"}}), "metadata"),
        (
            json!({"metadata": {"list": ["a", "\u{0}"]}}),
            "metadata.list[1]",
        ),
        (
            json!({"deduplication_key": "bot\u{0}"}),
            "deduplication_key",
        ),
    ] {
        let a = app
            .send(app.request(Method::PATCH, &conn_path).json(&body))
            .await;
        a.assert_error(400, "invalid_request");
        assert!(!a.field_problems(field).is_empty(), "{}", a.text);
    }
    let after = get(&app, &conn_path).await;
    assert_eq!(after["metadata"], json!({"team": "blue"}));
    assert_eq!(after["deduplication_key"], "bot-1");
    assert_eq!(after["updated_at"], conn["updated_at"]);

    // A create with NUL in its metadata is refused before the code is spent.
    let other = app.zoom_user(None).await;
    let code = app.auth_code(CLIENT, &other, None).await;
    let a = app
        .create_connection(json!({
            "authorization_code": code,
            "redirect_uri": testkit::REDIRECT_URI,
            "metadata": {"k": "\u{0}"},
        }))
        .await;
    a.assert_error(400, "invalid_request");
    assert!(!a.field_problems("metadata.k").is_empty(), "{}", a.text);
    let code_still_works = app
        .create_connection(
            json!({"authorization_code": code, "redirect_uri": testkit::REDIRECT_URI}),
        )
        .await;
    assert_eq!(code_still_works.status, 201, "{}", code_still_works.text);

    // Join tokens: the user id of a ZAK or onbehalf token.
    let a = app
        .send(
            app.request(Method::POST, "/api/v1/zoom_join_tokens")
                .json(&json!({
                    "meeting_url": "https://zoom.us/j/85746065432",
                    "zak_token": {"zoom_oauth_connection_user_id": format!("{user}\u{0}")},
                })),
        )
        .await;
    a.assert_error(400, "invalid_request");
    assert!(
        !a.field_problems("zak_token.zoom_oauth_connection_user_id")
            .is_empty(),
        "{}",
        a.text
    );

    // Apps: a client_id or secret.
    let a = app
        .create_app(json!({"client_id": "c\u{0}", "client_secret": "s"}))
        .await;
    a.assert_error(400, "invalid_request");
    assert!(!a.field_problems("client_id").is_empty(), "{}", a.text);
    assert_eq!(app.all_app_ids().await, vec![zoa_id.to_owned()]);

    // List filters, as sent in a URL (%00).
    for (path, field) in [
        ("/api/v1/zoom_oauth_connections?user_id=u%00", "user_id"),
        (
            "/api/v1/zoom_oauth_connections?account_id=%00",
            "account_id",
        ),
        (
            "/api/v1/zoom_oauth_connections?deduplication_key=bot%00",
            "deduplication_key",
        ),
        (
            "/api/v1/zoom_oauth_connections?zoom_oauth_app_id=zoa_%00",
            "zoom_oauth_app_id",
        ),
        ("/api/v1/zoom_oauth_connections?state=%00", "state"),
        ("/api/v1/zoom_meetings?meeting_id=1%00", "meeting_id"),
        (
            "/api/v1/zoom_meetings?zoom_oauth_connection_id=zoc_%00",
            "zoom_oauth_connection_id",
        ),
        ("/api/v1/zoom_oauth_apps?unknown=%00", "unknown"),
        ("/api/v1/zoom_oauth_apps?%00=1", "query"),
    ] {
        let a = app.send(app.request(Method::GET, path)).await;
        a.assert_error(400, "invalid_request");
        assert!(!a.field_problems(field).is_empty(), "{path}: {}", a.text);
    }
    // A cursor with NUL is no cursor.
    app.send(app.request(Method::GET, "/api/v1/zoom_oauth_apps?cursor=A%00B"))
        .await
        .assert_error(400, "invalid_cursor");
    // An id in the path with NUL names nothing.
    app.send(app.request(Method::GET, "/api/v1/zoom_oauth_connections/zoc_%00abc"))
        .await
        .assert_error(404, "not_found");
    // The same filters without NUL work.
    let list = get(
        &app,
        &format!("/api/v1/zoom_oauth_connections?user_id={user}&deduplication_key=bot-1"),
    )
    .await;
    assert_eq!(list["results"].as_array().expect("results").len(), 1);
}

fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Posts `body` to the app's Zoom webhook URL, signed now.
async fn post_event(app: &TestApp, url: &str, body: &Value) -> Answer {
    app.post_zoom_event(url, body.to_string().as_bytes(), WEBHOOK_SECRET, now_s())
        .await
}

fn meeting_created(ts: i64, id: u64, host: &str, topic: &str) -> Value {
    json!({
        "event": "meeting.created",
        "event_ts": ts,
        "payload": {
            "account_id": "acct",
            "operator_id": host,
            "object": {"id": id, "uuid": "u==", "host_id": host, "topic": topic,
                       "type": 2, "start_time": "2031-07-13T21:44:51Z"}
        }
    })
}

async fn signed_zoom_events_with_nul_are_answered_200(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let zoa = with_app(&app).await;
    let url = zoa["webhook_url"].as_str().expect("webhook_url");
    let (user, conn) = connect(&app, json!({})).await;
    let conn_path = format!(
        "/api/v1/zoom_oauth_connections/{}",
        conn["id"].as_str().expect("id")
    );
    let ts = chrono::Utc::now().timestamp_millis();
    let nul_user = format!("{user}\u{0}");

    // A host id with NUL names no connection: nothing to index.
    let a = post_event(
        &app,
        url,
        &meeting_created(ts, 85_746_065_001, &nul_user, "Standup"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["outcome"], "ignored", "{}", a.text);

    // NUL in the topic: the meeting is indexed, the NUL replaced.
    let a = post_event(
        &app,
        url,
        &meeting_created(ts + 1, 85_746_065_002, &user, "Stand\u{0}up"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["outcome"], "applied", "{}", a.text);
    let rows = get(&app, "/api/v1/zoom_meetings?page_size=100").await;
    let rows = rows["results"].as_array().expect("results");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["meeting_id"], "85746065002");
    assert_eq!(rows[0]["topic"], "Stand\u{FFFD}up");

    // A user update and a deauthorization of a user id with NUL change nothing.
    let a = post_event(
        &app,
        url,
        &json!({"event": "user.updated", "event_ts": ts + 2, "payload": {
            "account_id": "acct\u{0}", "object": {"id": nul_user, "pmi": 5_550_001_234u64}}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["outcome"], "ignored", "{}", a.text);
    let a = post_event(
        &app,
        url,
        &json!({"event": "app_deauthorized", "event_ts": ts + 3, "payload": {
            "account_id": "acct", "user_id": nul_user, "client_id": CLIENT,
            "deauthorization_time": "2031-01-01T00:00:00\u{0}Z"}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["outcome"], "ignored", "{}", a.text);
    let after = get(&app, &conn_path).await;
    assert_eq!(after["state"], "connected");
    assert_eq!(after["pmi"], conn["pmi"]);
    let rows = get(&app, "/api/v1/zoom_meetings?page_size=100").await;
    assert_eq!(rows["results"].as_array().expect("results").len(), 1);
}

/// A body large enough that the server cannot take it in at once (512 KiB).
fn large_body() -> String {
    format!(
        r#"{{"client_id": "c", "client_secret": "{}"}}"#,
        "s".repeat(512 * 1024)
    )
}

/// A client that writes each whole request before it reads the answer, as most
/// blocking HTTP clients do, over one keep-alive connection.
struct WholeRequestClient {
    stream: tokio::net::TcpStream,
}

impl WholeRequestClient {
    async fn connect(app: &TestApp) -> WholeRequestClient {
        let addr = app.base.trim_start_matches("http://");
        WholeRequestClient {
            stream: tokio::net::TcpStream::connect(addr).await.expect("connect"),
        }
    }

    /// Sends `method path` with `headers` and `body`; (status, JSON body) of the answer.
    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> std::io::Result<(u16, Value)> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        self.stream.write_all(head.as_bytes()).await?;
        self.stream.write_all(body.as_bytes()).await?;
        let mut answer = Vec::new();
        let mut chunk = [0u8; 8192];
        let end_of_head = loop {
            if let Some(i) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            answer.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&answer[..end_of_head]).to_ascii_lowercase();
        let status: u16 = head[9..12].parse().expect("a status code");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().expect("a length"));
        while answer.len() < end_of_head + length {
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            answer.extend_from_slice(&chunk[..n]);
        }
        let json = serde_json::from_slice(&answer[end_of_head..end_of_head + length])
            .unwrap_or(Value::Null);
        Ok((status, json))
    }
}

async fn answers_given_before_the_body_is_read_reach_the_client(backend: Backend) {
    let Some(app) = spawn_app_with(
        backend,
        Settings {
            rate_limit_per_second: Some(0.001),
            rate_limit_burst: Some(2),
            ..Settings::default()
        },
    )
    .await
    else {
        return;
    };
    let body = large_body();
    let json = ("content-type", "application/json");
    let forged = format!("Token zk_{}", "A".repeat(43));
    let key = format!("Token {}", app.key);
    // Spend the burst (2, then one request per 1,000 s).
    for _ in 0..2 {
        let a = app
            .send(app.request(Method::GET, "/api/v1/zoom_oauth_apps"))
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
    }

    // A client that writes the whole body first reads each refusal, and the
    // connection stays open for the next request.
    let mut client = WholeRequestClient::connect(&app).await;
    for _ in 0..3 {
        for (auth, status, code) in [
            (None, 401, "missing_authorization"),
            (Some(forged.as_str()), 401, "invalid_api_key"),
            (Some(key.as_str()), 429, "rate_limited"),
        ] {
            let mut headers = vec![json];
            headers.extend(auth.map(|a| ("authorization", a)));
            let (got, answer) = client
                .exchange("POST", "/api/v1/zoom_oauth_apps", &headers, &body)
                .await
                .expect("the whole request is sent and the answer read");
            assert_eq!(got, status, "{answer}");
            assert_eq!(answer["code"], code, "{answer}");
        }
    }
    let (got, _) = client
        .exchange("GET", "/healthz", &[], "")
        .await
        .expect("the connection is still open");
    assert_eq!(got, 200);

    // And so does a client that reads the answer while it still sends.
    for _ in 0..3 {
        app.send(
            app.request_as(&forged[6..], Method::POST, "/api/v1/zoom_oauth_apps")
                .header("content-type", "application/json")
                .body(body.clone()),
        )
        .await
        .assert_error(401, "invalid_api_key");
        let a = app
            .send(
                app.request(Method::POST, "/api/v1/zoom_oauth_apps")
                    .header("content-type", "application/json")
                    .body(body.clone()),
            )
            .await;
        a.assert_error(429, "rate_limited");
        assert!(a.headers.contains_key("retry-after"), "{:?}", a.headers);
    }
    let apps = column(
        &app,
        "SELECT id FROM zoom_oauth_apps WHERE project_id = ?",
        &app.project_id,
    )
    .await;
    assert!(apps.is_empty(), "{apps:?}");
}

/// A URL over 8 KiB: 414 in the error shape, for known and unknown paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_url_gets_a_json_414() {
    let app = spawn_app(Backend::Sqlite).await.expect("SQLite");
    let long = "a".repeat(9 * 1024);
    for path in [
        format!("/api/v1/zoom_oauth_connections?user_id={long}"),
        format!("/nowhere/{long}"),
    ] {
        app.send(app.request(Method::GET, &path))
            .await
            .assert_error(414, "uri_too_long");
    }
    // Just under the limit is read as usual.
    let user = "a".repeat(7 * 1024);
    let a = app
        .send(app.request(
            Method::GET,
            &format!("/api/v1/zoom_oauth_connections?user_id={user}"),
        ))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
}

/// Random methods at random paths leave /metrics with a bounded set of series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_and_paths_do_not_grow_metrics() {
    let app = spawn_app(Backend::Sqlite).await.expect("SQLite");
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("zoomkeeper_http_requests_total{"))
            .count()
    };
    let mut rng = rand::thread_rng();
    for n in 0..400 {
        // X…: never one of the known methods.
        let method: String = std::iter::once('X')
            .chain((0..rng.gen_range(2..12)).map(|_| char::from(rng.gen_range(b'A'..=b'Z'))))
            .collect();
        let method = Method::from_bytes(method.as_bytes()).expect("a token");
        let path = match n % 3 {
            0 => format!("/x{}/{}", rng.gen::<u32>(), rng.gen::<u64>()),
            1 => format!("/api/v1/zoom_oauth_apps/zoa_{}", rng.gen::<u64>()),
            _ => "/api/v1/zoom_oauth_apps".to_owned(),
        };
        let a = app.send(app.http.request(method, app.url(&path))).await;
        assert!(matches!(a.status, 401 | 404 | 405), "{}", a.text);
        // Known methods too, at unknown paths.
        let a = app
            .send(app.http.get(app.url(&format!("/y/{}", rng.gen::<u64>()))))
            .await;
        assert_eq!(a.status, 404);
    }
    let text = app.send(app.http.get(app.url("/metrics"))).await.text;
    let methods: BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("zoomkeeper_http_requests_total{"))
        .filter_map(|l| l.split("method=\"").nth(1)?.split('"').next())
        .collect();
    assert!(
        methods.iter().all(|m| ["GET", "other"].contains(m)),
        "{methods:?}"
    );
    // (method, route, status): at most {GET, other} × 3 routes (+ unmatched) × a few statuses.
    assert!(series(&text) <= 16, "{} series:\n{text}", series(&text));
    // Once /metrics has counted itself, only counts change: the body keeps (about)
    // its size however many more made-up requests come.
    let before = app.send(app.http.get(app.url("/metrics"))).await.text.len();
    for _ in 0..100 {
        let method =
            Method::from_bytes(format!("M{}", rng.gen::<u32>()).as_bytes()).expect("token");
        app.send(
            app.http
                .request(method, app.url(&format!("/z/{}", rng.gen::<u64>()))),
        )
        .await;
    }
    let text = app.send(app.http.get(app.url("/metrics"))).await.text;
    assert!(series(&text) <= 16, "{text}");
    assert!(text.len() < before + 1024, "{} → {}", before, text.len());
}

// ---- Requests cancelled half-way ------------------------------------------------

/// Rows of one column from the test's database (`?` placeholders are rewritten for
/// PostgreSQL).
async fn column(app: &TestApp, sql: &str, bind: &str) -> BTreeSet<String> {
    match app.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.database_url)
                .await
                .expect("sqlite");
            let rows: Vec<String> = sqlx::query_scalar(sql)
                .bind(bind)
                .fetch_all(&pool)
                .await
                .expect("query");
            pool.close().await;
            rows.into_iter().collect()
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.database_url)
                .await
                .expect("postgres");
            let rows: Vec<String> = sqlx::query_scalar(&sql.replace('?', "$1"))
                .bind(bind)
                .fetch_all(&pool)
                .await
                .expect("query");
            pool.close().await;
            rows.into_iter().collect()
        }
    }
}

const FIRST_MEETING: u64 = 85_000_000_000;

/// One request of the storm: a signed `meeting.created` for meeting `n` (hosted by
/// one of `users`) or a PATCH of one of `conns`' metadata.
fn storm_request(
    app: &TestApp,
    url: &str,
    users: &[String],
    conns: &[String],
    ts: i64,
    n: u64,
) -> reqwest::RequestBuilder {
    let pick = usize::try_from(n).expect("small") % users.len();
    if n % 3 == 2 {
        return app
            .request(
                Method::PATCH,
                &format!("/api/v1/zoom_oauth_connections/{}", conns[pick]),
            )
            .json(&json!({"metadata": {"round": n.to_string()}}));
    }
    let body = meeting_created(
        ts + i64::try_from(n).expect("small"),
        FIRST_MEETING + n,
        &users[pick],
        "Storm",
    )
    .to_string();
    let stamp = now_s().to_string();
    let signature = zoom::webhook::sign(WEBHOOK_SECRET, &stamp, body.as_bytes());
    app.http
        .post(url)
        .header("content-type", "application/json")
        .header("x-zm-request-timestamp", stamp)
        .header("x-zm-signature", signature)
        .body(body)
}

async fn cancelled_requests_leave_nothing_half_written(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let zoa = with_app(&app).await;
    let zoa_id = zoa["id"].as_str().expect("id").to_owned();
    let url = zoa["webhook_url"].as_str().expect("webhook_url").to_owned();
    let mut users = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..4 {
        let (user, conn) = connect(&app, json!({})).await;
        users.push(user);
        conns.push(conn["id"].as_str().expect("id").to_owned());
    }
    let ts = chrono::Utc::now().timestamp_millis();
    const WORKERS: u64 = 16;
    const PER_WORKER: u64 = 60;

    // The storm: most requests are given up after a random few hundred µs to a few
    // ms (the client drops the connection); the rest are waited for and must succeed.
    let app = std::sync::Arc::new(app);
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (app, url, users, conns) = (app.clone(), url.clone(), users.clone(), conns.clone());
        workers.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::from_entropy();
            for i in 0..PER_WORKER {
                let n = w * PER_WORKER + i;
                let request = storm_request(&app, &url, &users, &conns, ts, n).send();
                if rng.gen_ratio(1, 4) {
                    let a = Answer::read(request.await.expect("request sent")).await;
                    assert_eq!(a.status, 200, "{}", a.text);
                } else {
                    let wait = Duration::from_micros(rng.gen_range(0..4_000));
                    let _ = tokio::time::timeout(wait, request).await;
                }
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }

    // Later requests all succeed (a client timeout turns a request stuck behind a
    // lock into a failure instead of a hang). Every event is sent again: its first
    // delivery either left nothing or its whole change.
    let patient = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let events: Vec<u64> = (0..WORKERS * PER_WORKER).filter(|n| n % 3 != 2).collect();
    for &n in &events {
        let request = storm_request(&app, &url, &users, &conns, ts, n)
            .build()
            .expect("request");
        let a = Answer::read(patient.execute(request).await.expect("answered")).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert!(
            a.json["outcome"] == "applied" || a.json["outcome"] == "duplicate",
            "{}",
            a.text
        );
    }
    for (i, conn) in conns.iter().enumerate() {
        let path = format!("/api/v1/zoom_oauth_connections/{conn}");
        let request = app
            .request(Method::PATCH, &path)
            .json(&json!({"deduplication_key": format!("final-{i}")}))
            .build()
            .expect("request");
        let a = Answer::read(patient.execute(request).await.expect("answered")).await;
        assert_eq!(a.status, 200, "{}", a.text);
        let seen = get(&app, &path).await;
        assert_eq!(seen["deduplication_key"], format!("final-{i}"), "{seen}");
    }

    // Each receipt has its change applied, and each event has its receipt and row.
    let receipts = column(
        &app,
        "SELECT dedupe_key FROM zoom_webhook_receipts WHERE app_id = ?",
        &zoa_id,
    )
    .await;
    let indexed = column(
        &app,
        "SELECT meeting_id FROM zoom_meetings WHERE app_id = ?",
        &zoa_id,
    )
    .await;
    let expected_receipts: BTreeSet<String> = events
        .iter()
        .map(|n| {
            format!(
                "meeting.created:{}:{}",
                ts + i64::try_from(*n).expect("small"),
                FIRST_MEETING + n
            )
        })
        .collect();
    let expected_rows: BTreeSet<String> = events
        .iter()
        .map(|n| (FIRST_MEETING + n).to_string())
        .collect();
    assert_eq!(receipts, expected_receipts);
    assert_eq!(indexed, expected_rows);

    let logs = captured_logs();
    assert!(
        !logs.contains("transaction in progress"),
        "a statement ran in another request's transaction:\n{}",
        logs.lines()
            .filter(|l| l.contains("transaction in progress"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
