//! Outgoing webhook delivery (DESIGN.md §4 "Outgoing webhooks", §6), on SQLite and
//! PostgreSQL, against a real receiving HTTP server: a connection the simulator
//! deauthorizes is announced once with signatures a receiver can check; a receiver
//! that is down or failing is retried per the schedule; a resend works.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use keeper::config::Settings;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;
use testkit::{on_both_databases, spawn_app_with, Backend, Received, Receiver, TestApp};
use zoom_sim::SimConfig;

on_both_databases!(
    a_deauthorized_connection_is_announced_once_with_valid_signatures,
    a_receiver_that_is_down_gets_the_delivery_once_it_is_back,
    an_always_failing_receiver_ends_in_failure_then_a_resend_succeeds,
    after_a_rotation_both_secrets_sign,
    a_private_address_is_refused_at_delivery_time,
    a_delivery_held_by_a_dead_process_is_sent_after_its_lease_expires,
    metrics_count_delivery_outcomes_and_show_queue_depths,
);

const CLIENT: &str = "hook-client";
const TRIGGER: &str = "zoom_oauth_connection.state_change";

/// A local port nobody listens on (bound, then released).
async fn free_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("addr")
}

// ---- the receiver's checks, written independently of the sender ---------------

fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            let inner: Vec<String> = sorted
                .into_iter()
                .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), canonical(v)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

fn hmac_b64(secret: &[u8], message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("key");
    mac.update(message);
    STANDARD.encode(mac.finalize().into_bytes())
}

fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("header {name} missing"))
}

/// Checks both schemes; returns the `webhook-signature` entries' count.
fn verify(r: &Received, current: &[u8], previous: Option<&[u8]>) -> usize {
    assert!(header(r, "content-type").starts_with("application/json"));
    let payload: Value = serde_json::from_str(&r.body).expect("JSON body");
    assert_eq!(r.body, canonical(&payload), "body is sorted compact JSON");
    assert_eq!(
        header(r, "x-webhook-signature"),
        hmac_b64(current, r.body.as_bytes())
    );
    let id = header(r, "webhook-id");
    assert_eq!(payload["idempotency_key"], id);
    let ts: i64 = header(r, "webhook-timestamp")
        .parse()
        .expect("unix seconds");
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 300);
    let signed = format!("{id}.{ts}.{}", r.body);
    let entries: Vec<&str> = header(r, "webhook-signature").split(' ').collect();
    assert_eq!(
        entries[0],
        format!("v1,{}", hmac_b64(current, signed.as_bytes()))
    );
    match previous {
        Some(old) => {
            assert_eq!(entries.len(), 2);
            assert_eq!(
                entries[1],
                format!("v1,{}", hmac_b64(old, signed.as_bytes()))
            );
        }
        None => assert_eq!(entries.len(), 1),
    }
    entries.len()
}

// ---- the service side ---------------------------------------------------------

/// A started service that may call local receivers, with a short retry schedule and
/// the delivery worker running.
async fn service(backend: Backend, schedule: &str, allow_private: bool) -> Option<Service> {
    let app = spawn_app_with(
        backend,
        Settings {
            allow_private_callback_urls: Some(allow_private),
            webhook_retry_schedule: Some(schedule.to_owned()),
            ..Settings::default()
        },
    )
    .await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(keeper::webhook_delivery::run_every(
        app.keeper.clone(),
        Duration::from_millis(20),
        stopped,
    ));
    Some(Service { app, _stop: stop })
}

struct Service {
    app: TestApp,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn subscribe(app: &TestApp, url: &str) -> String {
    let c = app
        .send(
            app.request(Method::POST, "/api/v1/webhooks")
                .json(&json!({"url": url, "triggers": [TRIGGER]})),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text);
    c.json["id"].as_str().expect("id").to_owned()
}

async fn secret(app: &TestApp) -> Vec<u8> {
    let s = app
        .send(app.request(Method::GET, "/api/v1/webhook_secret"))
        .await;
    STANDARD
        .decode(s.json["secret"].as_str().expect("secret"))
        .expect("base64")
}

/// Connects a Zoom user, has the simulator deauthorize the app, and asks for a
/// token, which finds the grant gone: the connection is disconnected (one outbox
/// event). Returns the connection id.
async fn disconnect_a_connection(app: &TestApp) -> String {
    app.new_app(CLIENT).await;
    // Short-lived tokens, so the token request must refresh.
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

async fn deliveries(app: &TestApp, webhook: &str) -> Vec<Value> {
    let a = app
        .send(app.request(
            Method::GET,
            &format!("/api/v1/webhooks/{webhook}/deliveries?page_size=100"),
        ))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.json["results"].as_array().expect("results").clone()
}

/// Waits (up to 20 s) until the subscription's only delivery satisfies `done`.
async fn wait_for(app: &TestApp, webhook: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = deliveries(app, webhook).await;
        if let [one] = list.as_slice() {
            if done(one) {
                return one.clone();
            }
        }
        assert!(Instant::now() < deadline, "gave up waiting: {list:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---- the stories --------------------------------------------------------------

async fn a_deauthorized_connection_is_announced_once_with_valid_signatures(backend: Backend) {
    let Some(s) = service(backend, "100ms,200ms", true).await else {
        return;
    };
    let app = &s.app;
    let receiver = Receiver::start(200).await;
    let webhook = subscribe(app, &receiver.url()).await;
    let key = secret(app).await;
    let connection = disconnect_a_connection(app).await;

    let d = wait_for(app, &webhook, |d| d["status"] == "success").await;
    let got = receiver
        .wait_for_exactly(1, Duration::from_millis(300))
        .await;
    assert_eq!(got.len(), 1, "exactly one delivery");
    verify(&got[0], &key, None);

    let payload: Value = serde_json::from_str(&got[0].body).expect("json");
    assert_eq!(payload["trigger"], TRIGGER);
    assert_eq!(payload["zoom_oauth_connection_id"], connection.as_str());
    assert_eq!(payload["data"]["state"], "disconnected");
    assert!(payload["data"]["connection_failure_data"]["code"].is_string());
    for field in [
        "idempotency_key",
        "zoom_oauth_connection_metadata",
        "user_id",
        "account_id",
    ] {
        assert!(payload.get(field).is_some(), "{field} in {payload}");
    }

    assert_eq!(d["payload"], payload);
    assert_eq!(d["idempotency_key"], payload["idempotency_key"]);
    assert_eq!(d["trigger"], TRIGGER);
    assert_eq!(d["attempt_count"], 1);
    assert!(d["succeeded_at"].is_string() && d["last_attempt_at"].is_string());
    assert!(d["next_attempt_at"].is_null());
    let responses = d["responses"].as_array().expect("responses");
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0]["status_code"], 200);
    assert!(responses[0]["latency_ms"].is_number());
    assert!(responses[0]["error"].is_null());

    // Filtered lists.
    let ok = app
        .send(app.request(
            Method::GET,
            &format!("/api/v1/webhooks/{webhook}/deliveries?status=success"),
        ))
        .await;
    assert_eq!(ok.json["results"].as_array().map(Vec::len), Some(1));
    let pending = app
        .send(app.request(
            Method::GET,
            &format!("/api/v1/webhooks/{webhook}/deliveries?status=pending"),
        ))
        .await;
    assert_eq!(pending.json["results"], json!([]));
}

async fn a_receiver_that_is_down_gets_the_delivery_once_it_is_back(backend: Backend) {
    let Some(s) = service(
        backend,
        "100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms",
        true,
    )
    .await
    else {
        return;
    };
    let app = &s.app;
    let addr = free_addr().await;
    let webhook = subscribe(app, &format!("http://{addr}/hook")).await;
    disconnect_a_connection(app).await;

    // Nobody listens: attempts fail and are retried.
    let d = wait_for(app, &webhook, |d| {
        d["attempt_count"].as_i64().unwrap_or(0) >= 2
    })
    .await;
    assert_eq!(d["status"], "pending");
    assert_eq!(d["responses"][0]["error"], "connect");
    assert!(d["responses"][0]["status_code"].is_null());

    let receiver = Receiver::start_on(addr, 200).await;
    let d = wait_for(app, &webhook, |d| d["status"] == "success").await;
    let got = receiver
        .wait_for_exactly(1, Duration::from_millis(300))
        .await;
    assert_eq!(got.len(), 1);
    let responses = d["responses"].as_array().expect("responses");
    assert_eq!(responses.last().expect("last")["status_code"], 200);
    assert_eq!(
        d["attempt_count"].as_i64(),
        Some(responses.len() as i64),
        "every attempt recorded"
    );
}

async fn an_always_failing_receiver_ends_in_failure_then_a_resend_succeeds(backend: Backend) {
    let Some(s) = service(backend, "100ms,200ms", true).await else {
        return;
    };
    let app = &s.app;
    let receiver = Receiver::start(500).await;
    let webhook = subscribe(app, &receiver.url()).await;
    disconnect_a_connection(app).await;

    let d = wait_for(app, &webhook, |d| d["status"] == "failure").await;
    assert_eq!(
        d["attempt_count"], 3,
        "one attempt and the schedule's two retries"
    );
    let got = receiver.received();
    assert_eq!(got.len(), 3);
    // Spaced per schedule (±10 % jitter).
    assert!(got[1].at - got[0].at >= Duration::from_millis(90));
    assert!(got[2].at - got[1].at >= Duration::from_millis(180));
    let responses = d["responses"].as_array().expect("responses");
    assert_eq!(responses.len(), 3);
    assert!(responses
        .iter()
        .all(|r| r["status_code"] == 500 && r["error"] == "http_status"));

    // Fixed: a resend goes out once more with the same idempotency key.
    receiver.answer(204);
    let key = d["idempotency_key"].as_str().expect("key").to_owned();
    let resend = app
        .send(app.request(
            Method::POST,
            &format!("/api/v1/webhook_deliveries/{key}/resend"),
        ))
        .await;
    assert_eq!(resend.status, 202, "{}", resend.text);
    let d = wait_for(app, &webhook, |d| d["status"] == "success").await;
    assert_eq!(d["idempotency_key"], key.as_str());
    let got = receiver
        .wait_for_exactly(4, Duration::from_millis(300))
        .await;
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|r| header(r, "webhook-id") == key));
    assert_eq!(got[3].body, got[0].body);

    // Another project cannot resend it.
    let (_, other_key) = app.other_project("other").await;
    app.send(app.request_as(
        &other_key,
        Method::POST,
        &format!("/api/v1/webhook_deliveries/{key}/resend"),
    ))
    .await
    .assert_error(404, "not_found");
}

async fn after_a_rotation_both_secrets_sign(backend: Backend) {
    let Some(s) = service(backend, "100ms", true).await else {
        return;
    };
    let app = &s.app;
    let receiver = Receiver::start(200).await;
    subscribe(app, &receiver.url()).await;
    let old = secret(app).await;
    let rotated = app
        .send(app.request(Method::POST, "/api/v1/webhook_secret/rotate"))
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let new = STANDARD
        .decode(rotated.json["secret"].as_str().expect("secret"))
        .expect("base64");
    assert_ne!(new, old);
    disconnect_a_connection(app).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver.received().is_empty() {
        assert!(Instant::now() < deadline, "no delivery");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let got = receiver.received();
    assert_eq!(verify(&got[0], &new, Some(&old)), 2);
}

async fn a_private_address_is_refused_at_delivery_time(backend: Backend) {
    let Some(s) = service(backend, "100ms", false).await else {
        return;
    };
    let app = &s.app;
    let receiver = Receiver::start(200).await;
    // Saved while its name pointed elsewhere (DNS changes); now it is loopback.
    let now = chrono::Utc::now();
    let id = keeper::ids::IdKind::WebhookSubscription.generate();
    app.keeper
        .store
        .insert_webhook_subscription(
            &keeper::storage::WebhookSubscriptionRow {
                id: id.clone(),
                project_id: app.project_id.clone(),
                url: receiver.url(),
                triggers: vec![TRIGGER.to_owned()],
                is_active: true,
                created_at: now,
                updated_at: now,
            },
            10,
        )
        .await
        .expect("insert");
    disconnect_a_connection(app).await;
    let d = wait_for(app, &id, |d| d["status"] == "failure").await;
    assert_eq!(d["attempt_count"], 2);
    let responses = d["responses"].as_array().expect("responses");
    assert!(responses.iter().all(|r| r["error"] == "refused_address"
        && r["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("allow_private_callback_urls"))));
    assert!(receiver.received().is_empty(), "nothing was sent");
}

async fn a_delivery_held_by_a_dead_process_is_sent_after_its_lease_expires(backend: Backend) {
    // A process that claimed a delivery and died holds a lease nobody renews; once
    // it expires the row is sent with the same idempotency key (at least once).
    let Some(app) = spawn_app_with(
        backend,
        Settings {
            allow_private_callback_urls: Some(true),
            webhook_retry_schedule: Some("100ms".to_owned()),
            ..Settings::default()
        },
    )
    .await
    else {
        return;
    };
    let receiver = Receiver::start(200).await;
    let webhook = subscribe(&app, &receiver.url()).await;
    disconnect_a_connection(&app).await;
    let store = &app.keeper.store;
    let dispatched = store.dispatch_outbox_events(100).await.expect("dispatch");
    assert_eq!((dispatched.events, dispatched.deliveries), (1, 1));
    let held = store
        .claim_due_webhook_deliveries("dead-process", 10, Duration::from_secs(1))
        .await
        .expect("claim");
    assert_eq!(held.len(), 1);
    // While the lease lasts nobody else takes it.
    let round = keeper::webhook_delivery::run_once(&app.keeper)
        .await
        .expect("round");
    assert_eq!(round.claimed, 0);
    app.keeper.clock.advance(Duration::from_millis(1100));
    let round = keeper::webhook_delivery::run_once(&app.keeper)
        .await
        .expect("round");
    assert_eq!((round.claimed, round.succeeded), (1, 1));
    // The dead process's late write-back is discarded.
    let late = store
        .record_webhook_attempt(
            &held[0].idempotency_key,
            held[0].fence,
            &keeper::storage::DeliveryAttempt {
                status: keeper::storage::DeliveryStatus::Failure,
                retry_in: None,
                responses: json!([]),
            },
        )
        .await
        .expect("write-back");
    assert!(!late);
    let d = wait_for(&app, &webhook, |d| d["status"] == "success").await;
    assert_eq!(d["idempotency_key"], held[0].idempotency_key.as_str());
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(header(&got[0], "webhook-id"), held[0].idempotency_key);
}

async fn metrics_count_delivery_outcomes_and_show_queue_depths(backend: Backend) {
    // No worker loop: each step is taken by hand, so every number is known.
    let Some(app) = spawn_app_with(
        backend,
        Settings {
            allow_private_callback_urls: Some(true),
            webhook_retry_schedule: Some("100ms".to_owned()),
            ..Settings::default()
        },
    )
    .await
    else {
        return;
    };
    const DUE: &str = "zoomkeeper_webhook_deliveries_due";
    const OUTBOX: &str = "zoomkeeper_outbox_events_undispatched";
    let outcome = |o: &str| format!("zoomkeeper_webhook_deliveries_total{{outcome=\"{o}\"}}");
    let receiver = Receiver::start(500).await;
    subscribe(&app, &receiver.url()).await;
    disconnect_a_connection(&app).await;
    assert_eq!((app.metric(OUTBOX).await, app.metric(DUE).await), (1, 0));

    let store = &app.keeper.store;
    store.dispatch_outbox_events(100).await.expect("dispatch");
    assert_eq!((app.metric(OUTBOX).await, app.metric(DUE).await), (0, 1));

    let round = keeper::webhook_delivery::run_once(&app.keeper)
        .await
        .expect("round");
    assert_eq!(round.failed, 1);
    assert_eq!(app.metric(&outcome("retry")).await, 1);
    assert_eq!(app.metric(&outcome("success")).await, 0);

    receiver.answer(200);
    app.keeper.clock.advance(Duration::from_millis(200));
    assert_eq!(app.metric(DUE).await, 1, "due again after the retry delay");
    let round = keeper::webhook_delivery::run_once(&app.keeper)
        .await
        .expect("round");
    assert_eq!(round.succeeded, 1);
    assert_eq!(app.metric(&outcome("success")).await, 1);
    assert_eq!(app.metric(&outcome("failure")).await, 0);
    assert_eq!(app.metric(DUE).await, 0);
}

on_both_databases!(internal_errors_stay_out_of_delivery_records);

/// Makes every read of the project's previous signing secret fail in the store.
async fn break_signing_secret_reads(app: &TestApp) {
    app.execute_sql(&["ALTER TABLE projects DROP COLUMN previous_webhook_secret_until"])
        .await;
}

async fn internal_errors_stay_out_of_delivery_records(backend: Backend) {
    let Some(s) = service(backend, "50ms,50ms", true).await else {
        return;
    };
    let app = &s.app;
    let receiver = Receiver::start(200).await;
    let webhook = subscribe(app, &receiver.url()).await;
    break_signing_secret_reads(app).await;
    disconnect_a_connection(app).await;
    let d = wait_for(app, &webhook, |d| d["status"] == "failure").await;
    let responses = d["responses"].as_array().expect("responses");
    assert_eq!(responses.len(), 3, "{d}");
    for r in responses {
        assert_eq!(r["error"], "internal", "{d}");
        let message = r["error_message"].as_str().expect("a sentence");
        assert!(message.contains("internal error"), "{message}");
        for leak in ["database", "column", "previous_webhook_secret", "sql"] {
            assert!(
                !message.to_lowercase().contains(leak),
                "{leak} in {message}"
            );
        }
    }
    assert!(receiver.received().is_empty(), "nothing was sent");
}
