//! Customer-managed connections (Recall's `access_token_callback_url`, DESIGN.md
//! §14): the customer's own server holds the user's grant and answers zoomkeeper's
//! `GET` with an access token. Run on SQLite and PostgreSQL against the simulator,
//! with a real customer server on 127.0.0.1 that holds a real grant at the simulated
//! Zoom (JWT-shaped access tokens, like Zoom's).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine as _;
use keeper::config::Settings;
use keeper::connections::ConnectionError;
use keeper::domain::token_callbacks::{self, NewCallbackConnection};
use keeper::http::error::ApiError;
use keeper::storage::{ConnectionRow, ConnectionState};
use reqwest::Method;
use serde_json::{json, Value};
use testkit::{
    captured_logs, on_both_databases, spawn_app, spawn_app_with, Answer, Backend, TestApp,
    REDIRECT_URI,
};
use zoom_sim::{SimConfig, SimMeeting};

on_both_databases!(
    the_callbacks_token_is_handed_out_and_cached,
    concurrent_requests_after_expiry_make_one_callback_call,
    zak_meeting_sync_and_join_tokens_work_with_a_callback_connection,
    a_token_zoom_rejects_is_fetched_once_more_and_then_fails_clearly,
    callback_failures_are_clear_errors_and_never_disconnect,
    private_and_malformed_urls_are_refused,
    a_second_connection_for_the_same_user_is_refused_and_changes_nothing,
    the_token_keeper_never_touches_a_callback_connection,
    deleting_a_callback_connection_revokes_nothing_at_zoom,
    an_authorization_code_for_the_user_turns_it_into_an_ordinary_connection,
    a_callback_credential_through_api_v2,
    an_account_level_callback_credential_is_an_admins_and_one_per_account,
    api_v2_refuses_a_private_callback_url_unless_allowed,
);

const CLIENT: &str = "callback-client";
/// The customer's secret, in the callback URL's query string as Recall's docs show.
const URL_SECRET: &str = "cust-secret-7f3a9c";

/// What the customer's server answers next.
#[derive(Clone)]
enum Reply {
    /// 200 with this plain-text body.
    Body(String),
    Status(u16),
    /// Never answers in time.
    Hang,
}

/// The customer's token server: counts calls and answers what the test says.
struct Customer {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    reply: Arc<Mutex<Reply>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Customer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[derive(Clone)]
struct Inbox {
    calls: Arc<AtomicUsize>,
    reply: Arc<Mutex<Reply>>,
}

async fn answer(
    axum::extract::State(inbox): axum::extract::State<Inbox>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> axum::response::Response {
    inbox.calls.fetch_add(1, Ordering::SeqCst);
    assert!(
        query.as_deref().unwrap_or("").contains(URL_SECRET),
        "the customer's query string arrives whole"
    );
    let reply = inbox.reply.lock().expect("lock").clone();
    match reply {
        Reply::Body(body) => (StatusCode::OK, body).into_response(),
        Reply::Status(s) => (
            StatusCode::from_u16(s).expect("status"),
            "customer server says no",
        )
            .into_response(),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            (StatusCode::OK, "too late").into_response()
        }
    }
}

impl Customer {
    async fn start() -> Customer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let addr = listener.local_addr().expect("addr");
        let inbox = Inbox {
            calls: Arc::new(AtomicUsize::new(0)),
            reply: Arc::new(Mutex::new(Reply::Status(503))),
        };
        let router = axum::Router::new()
            .route("/zoom-token", axum::routing::get(answer))
            .with_state(inbox.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Customer {
            addr,
            calls: inbox.calls,
            reply: inbox.reply,
            stop: Some(stop),
        }
    }

    fn url(&self) -> String {
        format!(
            "http://{}/zoom-token?user-id=0001&auth_token={URL_SECRET}",
            self.addr
        )
    }

    fn reply(&self, reply: Reply) {
        *self.reply.lock().expect("lock") = reply;
    }

    fn serve(&self, token: &str) {
        self.reply(Reply::Body(token.to_owned()));
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// The customer's own grant of a user at the simulated Zoom.
struct CustomerGrant {
    access: String,
    refresh: String,
}

async fn oauth_token(app: &TestApp, form: &[(&str, &str)]) -> CustomerGrant {
    oauth_token_of(app, CLIENT, form).await
}

async fn oauth_token_of(app: &TestApp, client: &str, form: &[(&str, &str)]) -> CustomerGrant {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let a = Answer::read(
        app.http
            .post(format!("{}/oauth/token", app.sim.url()))
            .basic_auth(client, Some(format!("secret-of-{client}")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("token request"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    CustomerGrant {
        access: a.json["access_token"].as_str().expect("access").to_owned(),
        refresh: a.json["refresh_token"]
            .as_str()
            .expect("refresh")
            .to_owned(),
    }
}

/// The user authorises the customer's app (the same Zoom app), and the customer
/// exchanges the code itself.
async fn customer_grant(app: &TestApp, user: &str) -> CustomerGrant {
    let scopes = testkit::scopes_asked_for(&json!({"is_onbehalf_token_supported": true}));
    let code = app.auth_code(CLIENT, user, Some(scopes)).await;
    oauth_token(
        app,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
        ],
    )
    .await
}

async fn customer_refresh(app: &TestApp, grant: &CustomerGrant) -> CustomerGrant {
    oauth_token(
        app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &grant.refresh),
        ],
    )
    .await
}

/// The service (private callback URLs allowed: the customer server is on
/// 127.0.0.1) with one Zoom app, Zoom issuing JWT access tokens, and a customer
/// server.
async fn setup(backend: Backend) -> Option<(TestApp, Customer)> {
    let app = spawn_app_with(
        backend,
        Settings {
            allow_private_callback_urls: Some(true),
            ..Settings::default()
        },
    )
    .await?;
    app.new_app(CLIENT).await;
    app.sim
        .control()
        .set_config(&SimConfig {
            jwt_access_tokens: Some(true),
            ..Default::default()
        })
        .await
        .expect("sim config");
    Some((app, Customer::start().await))
}

async fn create(
    app: &TestApp,
    url: &str,
    local: bool,
    onbehalf: bool,
) -> Result<ConnectionRow, ConnectionError> {
    token_callbacks::create_from_callback(
        &app.keeper,
        &app.project_id,
        NewCallbackConnection {
            app_id: None,
            url: url.to_owned(),
            metadata: Some(json!({"customer": "acme"})),
            is_local_recording_token_supported: local,
            is_onbehalf_token_supported: onbehalf,
        },
    )
    .await
}

/// A user, the customer's grant of them, and their callback connection (local
/// recording and onbehalf) serving the grant's access token.
async fn connected(app: &TestApp, customer: &Customer) -> (String, CustomerGrant, ConnectionRow) {
    let user = app.zoom_user(None).await;
    let grant = customer_grant(app, &user).await;
    customer.serve(&grant.access);
    let row = create(app, &customer.url(), true, true)
        .await
        .expect("created");
    (user, grant, row)
}

fn exp_of(token: &str) -> i64 {
    token_callbacks::jwt_expiry(token)
        .expect("a JWT with exp")
        .timestamp()
}

/// A JWT-shaped token expiring at `exp` (Unix seconds).
fn jwt_expiring_at(exp: i64) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    format!(
        "{}.{}.{}",
        b64(br#"{"alg":"HS512"}"#),
        b64(json!({"exp": exp}).to_string().as_bytes()),
        b64(b"sig")
    )
}

/// Moves zoomkeeper's clock and the simulated Zoom's by `secs`.
async fn advance_clocks(app: &TestApp, secs: u64) {
    app.keeper.clock.advance(Duration::from_secs(secs));
    let offset = app.keeper.clock.ahead().num_seconds();
    app.sim
        .control()
        .set_config(&SimConfig {
            clock_offset_s: Some(offset),
            ..Default::default()
        })
        .await
        .expect("sim clock");
}

async fn stored(app: &TestApp, id: &str) -> ConnectionRow {
    app.keeper
        .store
        .connection_by_id(id)
        .await
        .expect("read")
        .expect("the connection exists")
}

async fn connection_count(app: &TestApp) -> usize {
    let a = app
        .send(app.request(Method::GET, "/api/v1/zoom_oauth_connections?page_size=100"))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.json["results"].as_array().expect("results").len()
}

fn no_secret_in(text: &str) {
    assert!(
        !text.contains(URL_SECRET),
        "the URL's secret leaked: {text}"
    );
    assert!(!text.contains("zoom-token?"), "the URL leaked: {text}");
}

async fn the_callbacks_token_is_handed_out_and_cached(backend: Backend) {
    let Some((app, customer)) = setup(backend).await else {
        return;
    };
    let (user, grant, row) = connected(&app, &customer).await;
    assert_eq!(customer.calls(), 1, "asked once, to identify the user");
    assert_eq!(row.user_id, user);
    assert_eq!(row.state, ConnectionState::Connected);
    assert!(row.refresh_token.is_none(), "no grant of ours");
    assert!(row.scopes.is_empty(), "scopes are unknown");
    assert!(row.next_sync_at.is_some(), "a meeting sync is asked for");

    let shown = app.connection(&row.id).await;
    assert_eq!(shown["user_id"], user.as_str());
    assert_eq!(shown["state"], "connected");
    assert_eq!(shown["metadata"], json!({"customer": "acme"}));
    no_secret_in(&shown.to_string());

    let a = app.access_token(&row.id).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["token"], grant.access.as_str());
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(a.json["expires_at"].as_str().expect("expires_at"))
            .expect("RFC 3339");
    assert_eq!(
        expires_at.timestamp(),
        exp_of(&grant.access),
        "the JWT's exp"
    );
    assert_eq!(customer.calls(), 1, "the cached token is handed out");
    assert_eq!(app.event_kinds(&row.id).await, vec!["created"]);

    // The sealed URL opens to what was given, under its own slot.
    let sealed = stored(&app, &row.id)
        .await
        .access_token_callback_url
        .expect("sealed URL");
    use secrecy::ExposeSecret as _;
    assert_eq!(
        app.keeper
            .vault
            .open_str(token_callbacks::url_slot(&row.id), &sealed)
            .expect("opens")
            .expose_secret(),
        customer.url()
    );
    assert!(!String::from_utf8_lossy(&sealed.0).contains(URL_SECRET));
    let s = app.sim_stats().await;
    assert_eq!((s.refresh_grants, s.revocations), (0, 0));
    no_secret_in(&captured_logs());
}

async fn concurrent_requests_after_expiry_make_one_callback_call(backend: Backend) {
    let Some((app, customer)) = setup(backend).await else {
        return;
    };
    let (_, grant, row) = connected(&app, &customer).await;
    advance_clocks(&app, 3600).await;
    let fresh = customer_refresh(&app, &grant).await;
    customer.serve(&fresh.access);

    let url = app.url(&format!(
        "/api/v1/zoom_oauth_connections/{}/access_token",
        row.id
    ));
    let requests: Vec<_> = (0..50)
        .map(|_| {
            let http = app.http.clone();
            let url = url.clone();
            let key = app.key.clone();
            tokio::spawn(async move {
                Answer::read(
                    http.post(url)
                        .header("authorization", format!("Token {key}"))
                        .send()
                        .await
                        .expect("sent"),
                )
                .await
            })
        })
        .collect();
    for answer in futures::future::join_all(requests).await {
        let a = answer.expect("request task");
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.json["token"], fresh.access.as_str());
    }
    assert_eq!(customer.calls(), 2, "the create's, and one for all fifty");
    let s = app.sim_stats().await;
    assert_eq!(s.refresh_grants, 1, "only the customer's own");
    assert_eq!(s.stale_refresh_token_uses, 0);
}

async fn zak_meeting_sync_and_join_tokens_work_with_a_callback_connection(backend: Backend) {
    let Some((app, customer)) = setup(backend).await else {
        return;
    };
    let user = app.zoom_user(None).await;
    let meeting = app
        .sim
        .control()
        .create_meeting(&user, &SimMeeting::default())
        .await
        .expect("meeting")
        .id;
    let grant = customer_grant(&app, &user).await;
    customer.serve(&grant.access);
    let row = create(&app, &customer.url(), true, true)
        .await
        .expect("created");

    let zak = app
        .connection_call(Method::POST, &row.id, "/zak_token")
        .await;
    assert_eq!(zak.status, 200, "{}", zak.text);
    let info = |token: Value| {
        let app = &app;
        async move {
            app.sim
                .control()
                .token_info(token.as_str().expect("a token"))
                .await
                .expect("token info")
                .expect("a token the simulator minted")
        }
    };
    let z = info(zak.json["token"].clone()).await;
    assert_eq!(
        (z.token_type.as_str(), z.user_id.as_deref()),
        ("zak", Some(user.as_str()))
    );

    // Meeting sync indexes the user's meeting with the callback's token.
    let (_stop, stopping) = tokio::sync::watch::channel(false);
    keeper::meeting_sync::run_once(&app.keeper, &stopping)
        .await
        .expect("sync round");
    let a = app
        .send(
            app.request(Method::POST, "/api/v1/zoom_join_tokens")
                .json(&json!({
                    "meeting_url": format!("https://zoom.us/j/{meeting}"),
                    "zak_token": {"zoom_oauth_connection_user_id": user},
                    "onbehalf_token": {"zoom_oauth_connection_user_id": user},
                })),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["problems"], json!([]), "{}", a.text);
    let lrt = info(a.json["app_privilege_token"].clone()).await;
    assert_eq!(lrt.token_type, "local_recording");
    assert_eq!(lrt.user_id.as_deref(), Some(user.as_str()));
    assert_eq!(lrt.meeting_id, Some(meeting));
    let obf = info(a.json["onbehalf_token"].clone()).await;
    assert_eq!(obf.user_id.as_deref(), Some(user.as_str()));
    assert_eq!(customer.calls(), 1, "every token came from the cached one");
    let s = app.sim_stats().await;
    assert_eq!((s.refresh_grants, s.revocations), (0, 0));
}

async fn a_token_zoom_rejects_is_fetched_once_more_and_then_fails_clearly(backend: Backend) {
    let Some((app, customer)) = setup(backend).await else {
        return;
    };
    let (user, _, row) = connected(&app, &customer).await;
    // The user authorises the customer's app again: Zoom now rejects the cached
    // token (a newer authorisation), and the customer serves the new one.
    let second = customer_grant(&app, &user).await;
    customer.serve(&second.access);
    let zak = app
        .connection_call(Method::POST, &row.id, "/zak_token")
        .await;
    assert_eq!(zak.status, 200, "{}", zak.text);
    assert_eq!(
        customer.calls(),
        2,
        "asked once more after Zoom's rejection"
    );

    // Again, but the customer keeps serving the token Zoom now rejects.
    customer_grant(&app, &user).await;
    let zak = app
        .connection_call(Method::POST, &row.id, "/zak_token")
        .await;
    zak.assert_error(502, "access_token_callback_failed");
    assert!(
        zak.text
            .contains("The access_token_callback_url did not return a usable Zoom access token"),
        "{}",
        zak.text
    );
    assert!(zak.text.contains("Zoom rejected"), "{}", zak.text);
    no_secret_in(&zak.text);
    assert!(!zak.text.contains(&second.access));
    assert_eq!(customer.calls(), 3, "one more ask, then the error");
    assert_eq!(app.connection(&row.id).await["state"], "connected");
    assert_eq!(app.event_kinds(&row.id).await, vec!["created"]);
    assert_eq!(app.sim_stats().await.revocations, 0);
}

async fn callback_failures_are_clear_errors_and_never_disconnect(backend: Backend) {
    let Some((app, customer)) = setup(backend).await else {
        return;
    };
    let (_, grant, row) = connected(&app, &customer).await;
    advance_clocks(&app, 3600).await;
    let soon = (app.keeper.clock.now() + chrono::Duration::seconds(60)).timestamp();
    let cases = [
        (Reply::Status(500), "it answered HTTP 500"),
        (Reply::Status(302), "redirects are not followed"),
        (Reply::Body(String::new()), "its answer was empty"),
        (Reply::Body("  \n".into()), "its answer was empty"),
        (Reply::Body("one two".into()), "several words"),
        (
            Reply::Body(json!({"token": "x"}).to_string()),
            "its answer is JSON",
        ),
        (Reply::Body("x".repeat(9 * 1024)), "longer than 8 KiB"),
        (Reply::Body(jwt_expiring_at(soon)), "expires in"),
        (Reply::Hang, "did not answer within 5 s"),
    ];
    for (reply, expected) in cases {
        customer.reply(reply);
        let a = app.access_token(&row.id).await;
        a.assert_error(502, "access_token_callback_failed");
        assert!(
            a.text.contains(
                "The access_token_callback_url did not return a usable Zoom access token"
            ),
            "{}",
            a.text
        );
        assert!(a.text.contains(expected), "{expected}: {}", a.text);
        no_secret_in(&a.text);
        assert_eq!(app.connection(&row.id).await["state"], "connected");
    }
    assert_eq!(customer.calls(), 1 + 9, "one ask per request");

    // The customer fixes its server: the connection works again.
    let fresh = customer_refresh(&app, &grant).await;
    customer.serve(&fresh.access);
    let a = app.access_token(&row.id).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["token"], fresh.access.as_str());
    assert_eq!(app.event_kinds(&row.id).await, vec!["created"]);

    // At create, the same failures refuse the connection and store nothing.
    let other = app.zoom_user(None).await;
    customer_grant(&app, &other).await;
    customer.reply(Reply::Status(500));
    let e = create(&app, &customer.url(), true, false)
        .await
        .expect_err("refused");
    let ConnectionError::TokenCallbackFailed(message) = &e else {
        panic!("{e:?}");
    };
    assert!(message.contains("it answered HTTP 500"), "{message}");
    let api = ApiError::from(e);
    assert_eq!(
        (api.status().as_u16(), api.code()),
        (400, "access_token_callback_failed")
    );
    customer.reply(Reply::Body(jwt_expiring_at(soon)));
    let e = create(&app, &customer.url(), true, false)
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("at least 120 s"), "{e}");
    assert_eq!(connection_count(&app).await, 1);
    no_secret_in(&captured_logs());
}

async fn private_and_malformed_urls_are_refused(backend: Backend) {
    // allow_private_callback_urls is off by default.
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.new_app(CLIENT).await;
    let customer = Customer::start().await;
    let user = app.zoom_user(None).await;
    customer.serve(&customer_grant(&app, &user).await.access);
    let problems = |e: ConnectionError| match e {
        ConnectionError::Invalid(fields) => fields
            .get("access_token_callback_url")
            .cloned()
            .unwrap_or_else(|| panic!("{fields:?}")),
        other => panic!("{other:?}"),
    };
    let p = problems(
        create(&app, &customer.url(), true, false)
            .await
            .expect_err("private"),
    );
    assert!(p[0].contains("allow_private_callback_urls"), "{p:?}");
    no_secret_in(&p[0]);
    let long = format!("https://example.com/?t={}", "a".repeat(200));
    let p = problems(create(&app, &long, true, false).await.expect_err("long"));
    assert!(p[0].contains("at most 200 characters"), "{p:?}");
    let p = problems(
        create(&app, "ftp://example.com/token", true, false)
            .await
            .expect_err("ftp"),
    );
    assert!(p[0].contains("http:// or https://"), "{p:?}");
    let p = problems(create(&app, "  ", true, false).await.expect_err("blank"));
    assert!(p[0].contains("Must not be empty"), "{p:?}");
    let e = create(&app, &customer.url(), false, false)
        .await
        .expect_err("no capability");
    let ConnectionError::Invalid(fields) = e else {
        panic!("{e:?}");
    };
    assert!(fields.contains_key("is_local_recording_token_supported"));
    assert_eq!(customer.calls(), 0, "a refused URL is never called");
    assert_eq!(connection_count(&app).await, 0);
}

async fn a_second_connection_for_the_same_user_is_refused_and_changes_nothing(backend: Backend) {
    let Some((app, customer)) = setup(backend).await else {
        return;
    };
    let (user, _, first) = connected(&app, &customer).await;
    let before = stored(&app, &first.id).await;
    let e = create(&app, &customer.url(), true, false)
        .await
        .expect_err("refused");
    match &e {
        ConnectionError::UserAlreadyConnected {
            user_id,
            connection_id,
        } => {
            assert_eq!((user_id, connection_id), (&user, &first.id));
        }
        other => panic!("{other:?}"),
    }
    let api = ApiError::from(e);
    assert_eq!(
        (api.status().as_u16(), api.code()),
        (409, "zoom_user_already_connected")
    );
    let after = stored(&app, &first.id).await;
    assert_eq!(
        (after.access_token, after.updated_at, after.fence),
        (before.access_token, before.updated_at, before.fence)
    );

    // A user connected from an authorization code is refused the same way.
    let (coded, a) = app.connect(CLIENT, json!({})).await;
    assert_eq!(a.status, 201, "{}", a.text);
    let coded_id = a.json["id"].as_str().expect("id").to_owned();
    let before = stored(&app, &coded_id).await;
    customer.serve(&customer_grant(&app, &coded).await.access);
    match create(&app, &customer.url(), true, false).await {
        Err(ConnectionError::UserAlreadyConnected { connection_id, .. }) => {
            assert_eq!(connection_id, coded_id)
        }
        other => panic!("{:?}", other.map(|r| r.id)),
    }
    let after = stored(&app, &coded_id).await;
    assert!(after.access_token_callback_url.is_none());
    assert_eq!(after.refresh_token, before.refresh_token);
    assert_eq!(connection_count(&app).await, 2);
}

async fn the_token_keeper_never_touches_a_callback_connection(backend: Backend) {
    let Some((app, customer)) = setup(backend).await else {
        return;
    };
    let (_, _, row) = connected(&app, &customer).await;
    // An ordinary connection alongside, which the keeper does refresh.
    let (_, a) = app.connect(CLIENT, json!({})).await;
    assert_eq!(a.status, 201, "{}", a.text);
    let coded = a.json["id"].as_str().expect("id").to_owned();
    app.keeper
        .clock
        .advance(Duration::from_secs(31 * 24 * 3600));
    let (_stop, stopping) = tokio::sync::watch::channel(false);
    let round = keeper::token_keeper::run_once(&app.keeper, &stopping)
        .await
        .expect("round");
    assert_eq!((round.claimed, round.refreshed), (1, 1), "{round:?}");
    let round = keeper::token_keeper::run_once(&app.keeper, &stopping)
        .await
        .expect("round");
    assert_eq!(round.claimed, 0, "{round:?}");
    assert_eq!(customer.calls(), 1, "only the create asked the callback");
    assert_eq!(app.sim_stats().await.refresh_grants, 1, "the ordinary one");
    assert_eq!(app.event_kinds(&row.id).await, vec!["created"]);
    assert!(app
        .event_kinds(&coded)
        .await
        .contains(&"token_refreshed".to_owned()));
    let kept = stored(&app, &row.id).await;
    assert_eq!(kept.state, ConnectionState::Connected);
    assert!(kept.lease_owner.is_none());
}

async fn deleting_a_callback_connection_revokes_nothing_at_zoom(backend: Backend) {
    let Some((app, customer)) = setup(backend).await else {
        return;
    };
    let (_, grant, row) = connected(&app, &customer).await;
    let a = app.connection_call(Method::DELETE, &row.id, "").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["deleted"], true);
    assert_eq!(
        app.connection_call(Method::GET, &row.id, "").await.status,
        404
    );
    assert_eq!(app.sim_stats().await.revocations, 0);
    let info = app
        .sim
        .control()
        .token_info(&grant.access)
        .await
        .expect("info")
        .expect("known");
    assert_eq!(info.status, "active", "the customer's grant lives on");
    assert_eq!(customer.calls(), 1);
}

async fn an_authorization_code_for_the_user_turns_it_into_an_ordinary_connection(backend: Backend) {
    let Some((app, customer)) = setup(backend).await else {
        return;
    };
    let (user, _, row) = connected(&app, &customer).await;
    // `/api/v1`'s create upserts by Zoom user: the grant zoomkeeper now holds is
    // where the tokens come from, and the callback is dropped.
    let a = app.connect_user(CLIENT, &user, json!({})).await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.json["id"], row.id.as_str());
    let now = stored(&app, &row.id).await;
    assert!(now.access_token_callback_url.is_none());
    assert!(now.refresh_token.is_some());
    app.keeper.clock.advance(Duration::from_secs(3600));
    let a = app.access_token(&row.id).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(app.sim_stats().await.refresh_grants, 1, "refreshed by us");
    assert_eq!(customer.calls(), 1, "the callback is not asked any more");
}

/// The app's `/api/v2` UUID.
async fn app_uuid(app: &TestApp) -> String {
    let a = app
        .send(app.request(Method::GET, "/api/v2/zoom-oauth-apps/"))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.json["results"][0]["id"]
        .as_str()
        .expect("an app")
        .to_owned()
}

async fn create_v2(app: &TestApp, body: Value) -> Answer {
    app.send(
        app.request(Method::POST, "/api/v2/zoom-oauth-credentials/")
            .json(&body),
    )
    .await
}

/// Recall's customer-managed create (docs.recall.ai `docs/customer-managed-oauth`):
/// `{oauth_app, access_token_callback_url}` → 201 with the URL; a second one for
/// the same user → 400 `{detail, conflicting_zoom_user_id}`.
async fn a_callback_credential_through_api_v2(backend: Backend) {
    let Some((app, customer)) = setup(backend).await else {
        return;
    };
    let oauth_app = app_uuid(&app).await;
    let user = app.zoom_user(None).await;
    let grant = customer_grant(&app, &user).await;
    customer.serve(&grant.access);
    let body = json!({"oauth_app": oauth_app, "access_token_callback_url": customer.url()});
    let created = create_v2(&app, body.clone()).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let c = &created.json;
    assert_eq!(c["user_id"], user.as_str());
    assert_eq!(c["status"], "healthy");
    // Shown without the secrets the customer put in its query string.
    assert_eq!(
        c["access_token_callback_url"],
        format!(
            "http://{}/zoom-token?user-id=***&auth_token=***",
            customer.addr
        )
    );
    assert!(!created.text.contains(URL_SECRET), "{}", created.text);
    let id = c["id"].as_str().expect("id");
    let token = app
        .send(app.request(
            Method::GET,
            &format!("/api/v2/zoom-oauth-credentials/{id}/access-token/"),
        ))
        .await;
    assert_eq!(token.status, 200, "{}", token.text);
    assert_eq!(token.json["token"], grant.access.as_str());

    // A second credential for the user: Recall's conflict answer, nothing changed.
    let again = create_v2(&app, body).await;
    assert_eq!(again.status, 400, "{}", again.text);
    assert_eq!(again.json["conflicting_zoom_user_id"], user.as_str());
    assert_eq!(again.json["conflicting_zoom_account_id"], Value::Null);
    let detail = again.json["detail"].as_str().expect("detail");
    assert!(
        detail.contains(&user) && detail.contains("at most one"),
        "{detail}"
    );
    let all = app
        .send(app.request(Method::GET, "/api/v2/zoom-oauth-credentials/"))
        .await;
    assert_eq!(all.json["results"].as_array().expect("results").len(), 1);

    // The callback failing at create is a 400 naming what to fix.
    customer.reply(Reply::Status(500));
    let other = app.zoom_user(None).await;
    let _ = other;
    let failed = create_v2(
        &app,
        json!({"oauth_app": oauth_app, "access_token_callback_url": customer.url()}),
    )
    .await;
    assert_eq!(failed.status, 400, "{}", failed.text);
    assert!(
        failed.json["detail"]
            .as_str()
            .expect("detail")
            .contains("500"),
        "{}",
        failed.text
    );
    assert!(!failed.text.contains(URL_SECRET));
}

/// For an account-managed app Recall allows one credential per authorized Zoom
/// account, and its 400 names the account (`conflicting_zoom_account_id`, Recall's
/// `ZoomOAuthCredentialBadRequest` schema); the token must be an admin's.
async fn an_account_level_callback_credential_is_an_admins_and_one_per_account(backend: Backend) {
    let Some((app, customer)) = setup(backend).await else {
        return;
    };
    const ACCOUNT_CLIENT: &str = "callback-account-client";
    let sim = app.sim.control();
    sim.create_app(&zoom_sim::SimApp {
        client_id: ACCOUNT_CLIENT.into(),
        client_secret: format!("secret-of-{ACCOUNT_CLIENT}"),
        kind: Some(zoom_sim::SimAppKind::AccountLevel),
        ..Default::default()
    })
    .await
    .expect("sim app");
    let made = app
        .create_app(json!({"client_id": ACCOUNT_CLIENT,
            "client_secret": format!("secret-of-{ACCOUNT_CLIENT}"), "kind": "account_level"}))
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    let v2_app = app
        .send(app.request(
            Method::GET,
            &format!(
                "/api/v2/zoom-oauth-apps/{}/",
                made.json["id"].as_str().expect("id")
            ),
        ))
        .await;
    let oauth_app = v2_app.json["id"].as_str().expect("uuid").to_owned();
    let account = sim
        .create_account(&zoom_sim::SimAccount {
            members: 1,
            ..Default::default()
        })
        .await
        .expect("account");
    let other_admin = sim
        .create_user(&zoom_sim::SimUser {
            account_id: Some(account.account_id.clone()),
            role: Some(zoom_sim::SimUserRole::Admin),
            ..Default::default()
        })
        .await
        .expect("admin")
        .id;
    let grant_of = |user: String| {
        let app = &app;
        async move {
            let scopes = zoom_sim::ACCOUNT_LEVEL_SCOPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
            let code = app.auth_code(ACCOUNT_CLIENT, &user, Some(scopes)).await;
            oauth_token_of(
                app,
                ACCOUNT_CLIENT,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT_URI),
                ],
            )
            .await
        }
    };
    let body = json!({"oauth_app": oauth_app, "access_token_callback_url": customer.url()});

    // A member's token is refused: an account-level credential is an admin's.
    customer.serve(&grant_of(account.user_ids[0].clone()).await.access);
    let member = create_v2(&app, body.clone()).await;
    assert_eq!(member.status, 400, "{}", member.text);
    assert_eq!(member.json["code"], "not_account_admin", "{}", member.text);

    customer.serve(&grant_of(account.admin_id.clone()).await.access);
    let first = create_v2(&app, body.clone()).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.json["account_id"], account.account_id.as_str());

    // Another admin of the same account: Recall's account conflict, nothing stored.
    customer.serve(&grant_of(other_admin).await.access);
    let again = create_v2(&app, body).await;
    assert_eq!(again.status, 400, "{}", again.text);
    assert_eq!(
        again.json["conflicting_zoom_account_id"],
        account.account_id.as_str()
    );
    assert_eq!(again.json["conflicting_zoom_user_id"], Value::Null);
    assert_eq!(again.json["code"], "zoom_account_already_connected");
    assert!(
        again.json["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&account.account_id) && d.contains("at most one")),
        "{}",
        again.text
    );
    let all = app
        .send(app.request(
            Method::GET,
            &format!("/api/v2/zoom-oauth-credentials/?oauth_app={oauth_app}"),
        ))
        .await;
    assert_eq!(all.json["results"].as_array().expect("results").len(), 1);
}

async fn api_v2_refuses_a_private_callback_url_unless_allowed(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.new_app(CLIENT).await;
    let customer = Customer::start().await;
    let oauth_app = app_uuid(&app).await;
    let a = create_v2(
        &app,
        json!({"oauth_app": oauth_app, "access_token_callback_url": customer.url()}),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.text);
    let problem = a.json["fields"]["access_token_callback_url"][0]
        .as_str()
        .expect("a problem with the URL");
    assert!(problem.contains("allow_private_callback_urls"), "{problem}");
    assert!(!a.text.contains(URL_SECRET));
    assert_eq!(customer.calls(), 0, "never called");
}
