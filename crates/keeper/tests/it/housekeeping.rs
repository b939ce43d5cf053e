//! Housekeeping (DESIGN.md §6), on SQLite and PostgreSQL: old Zoom webhook receipts
//! and index rows of meetings long past go; recent ones, PMI rows and meetings
//! without a start time stay; outgoing webhook deliveries finished long ago and
//! outbox events fanned out long ago go, pending deliveries and events not fanned
//! out stay however old; bot platform calls past their retention and signed
//! message ids past the replay window go; app log lines past their retention go;
//! two processes sweeping at once agree; the loop stops on
//! shutdown.

use std::time::Duration;

use futures::StreamExt as _;
use keeper::housekeeping::{self, Sweep, BATCH};
use keeper::storage::{MeetingIndexChange, MeetingRow, MeetingSource};
use serde_json::json;
use testkit::{on_both_databases, spawn_app, Backend, TestApp};

on_both_databases!(
    old_receipts_and_past_meetings_go_recent_and_pmi_rows_stay,
    old_finished_deliveries_and_fanned_out_events_go_pending_ones_stay,
    two_processes_sweeping_at_once_delete_each_row_once,
    the_loop_stops_on_shutdown,
    old_bot_platform_calls_and_message_ids_go,
    old_connect_sessions_go,
    old_app_log_lines_go,
);

const CLIENT: &str = "housekeeping-client";
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// A started service with one app and one connected user: (app id, connection id).
async fn connected(backend: Backend) -> Option<(TestApp, String, String)> {
    let app = spawn_app(backend).await?;
    let zoa = app.new_app(CLIENT).await["id"]
        .as_str()
        .expect("app id")
        .to_owned();
    let (_, c) = app.connect(CLIENT, json!({})).await;
    assert_eq!(c.status, 201, "{}", c.text);
    let zoc = c.json["id"].as_str().expect("connection id").to_owned();
    Some((app, zoa, zoc))
}

async fn sweep(app: &TestApp) -> Sweep {
    let (_stop, stopping) = tokio::sync::watch::channel(false);
    housekeeping::run_once(&app.keeper, &stopping)
        .await
        .expect("sweep")
}

async fn index(
    app: &TestApp,
    zoa: &str,
    zoc: &str,
    meeting_id: &str,
    source: MeetingSource,
    start: Option<Duration>,
    ago: bool,
) {
    let now = app.keeper.store.now().await.expect("now");
    let row = MeetingRow {
        project_id: app.project_id.clone(),
        app_id: zoa.to_owned(),
        meeting_id: meeting_id.to_owned(),
        connection_id: zoc.to_owned(),
        source,
        topic: None,
        start_time: start.map(|d| if ago { now - d } else { now + d }),
        synced_at: now,
        host_user_id: None,
    };
    let change = if source == MeetingSource::Pmi {
        MeetingIndexChange::ReplacePmi {
            row,
            personal_meeting_url: None,
        }
    } else {
        MeetingIndexChange::Upsert(row)
    };
    app.keeper
        .store
        .apply_meeting_change(&change)
        .await
        .expect("index a meeting");
}

async fn indexed(app: &TestApp, zoa: &str, meeting_id: &str) -> bool {
    !app.keeper
        .store
        .meeting_hosts(&app.project_id, Some(zoa), meeting_id)
        .await
        .expect("lookup")
        .is_empty()
}

async fn receipt(app: &TestApp, zoa: &str, key: &str, age: Duration) {
    let now = app.keeper.store.now().await.expect("now");
    app.keeper
        .store
        .record_webhook_receipt_and_apply(zoa, key, now - age, &MeetingIndexChange::Nothing)
        .await
        .expect("receipt");
}

async fn has_receipt(app: &TestApp, zoa: &str, key: &str) -> bool {
    app.keeper
        .store
        .webhook_receipt_exists(zoa, key)
        .await
        .expect("receipt lookup")
}

/// `n` one-off webhook rows (ids from `first`) that started `age` ago.
async fn past_meetings(app: &TestApp, zoa: &str, zoc: &str, first: u64, n: u64, age: Duration) {
    futures::stream::iter(first..first + n)
        .for_each_concurrent(8, |id| async move {
            index(
                app,
                zoa,
                zoc,
                &id.to_string(),
                MeetingSource::Webhook,
                Some(age),
                true,
            )
            .await
        })
        .await;
}

async fn old_receipts_and_past_meetings_go_recent_and_pmi_rows_stay(backend: Backend) {
    let Some((app, zoa, zoc)) = connected(backend).await else {
        return;
    };
    use MeetingSource::*;
    // More than one batch of long-past meetings, so the sweep goes round.
    let many = u64::from(BATCH) + 250;
    past_meetings(&app, &zoa, &zoc, 100_000_000_000, many, 8 * DAY).await;
    index(&app, &zoa, &zoc, "811111111", Sync, Some(8 * DAY), true).await;
    index(&app, &zoa, &zoc, "822222222", Webhook, Some(6 * DAY), true).await;
    index(&app, &zoa, &zoc, "833333333", Sync, Some(DAY), false).await;
    // Recurring meetings are indexed without a start time.
    index(&app, &zoa, &zoc, "844444444", Webhook, None, true).await;
    // A PMI row stays whatever its start time says.
    index(&app, &zoa, &zoc, "855555555", Pmi, Some(30 * DAY), true).await;
    receipt(&app, &zoa, "meeting.created:1:811111111", 8 * DAY).await;
    receipt(&app, &zoa, "meeting.created:2:822222222", 6 * DAY).await;
    receipt(
        &app,
        &zoa,
        "meeting.created:3:833333333",
        Duration::from_secs(60),
    )
    .await;

    let first = sweep(&app).await;
    assert_eq!(
        first,
        Sweep {
            receipts: 1,
            meetings: many + 1,
            ..Sweep::default()
        }
    );
    assert!(!indexed(&app, &zoa, "811111111").await);
    assert!(!indexed(&app, &zoa, "100000000000").await);
    assert!(!indexed(&app, &zoa, &(100_000_000_000 + many - 1).to_string()).await);
    for kept in ["822222222", "833333333", "844444444", "855555555"] {
        assert!(indexed(&app, &zoa, kept).await, "{kept} was dropped");
    }
    assert!(!has_receipt(&app, &zoa, "meeting.created:1:811111111").await);
    assert!(has_receipt(&app, &zoa, "meeting.created:2:822222222").await);
    assert!(has_receipt(&app, &zoa, "meeting.created:3:833333333").await);

    // A second sweep finds nothing more to do.
    assert_eq!(sweep(&app).await, Sweep::default());
}

async fn two_processes_sweeping_at_once_delete_each_row_once(backend: Backend) {
    let Some((app, zoa, zoc)) = connected(backend).await else {
        return;
    };
    let many = 2 * u64::from(BATCH) + 100;
    past_meetings(&app, &zoa, &zoc, 200_000_000_000, many, 9 * DAY).await;
    index(
        &app,
        &zoa,
        &zoc,
        "866666666",
        MeetingSource::Sync,
        Some(DAY),
        true,
    )
    .await;
    let (a, b) = tokio::join!(sweep(&app), sweep(&app));
    assert_eq!(a.meetings + b.meetings, many);
    // Whatever a process stopped early on (PostgreSQL skips locked rows), the next
    // sweep finishes.
    let rest = sweep(&app).await;
    assert_eq!(rest.meetings, 0);
    assert!(indexed(&app, &zoa, "866666666").await);
    assert!(!indexed(&app, &zoa, "200000000000").await);
}

async fn the_loop_stops_on_shutdown(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(housekeeping::run(app.keeper.clone(), stopping));
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.send(true).expect("the loop listens");
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("stops within 5 s")
        .expect("no panic");
}

/// Raw access to the test app's database, to write rows as they would look after
/// weeks of service.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

async fn raw(app: &TestApp) -> Raw {
    match app.backend {
        Backend::Sqlite => Raw::Sqlite(
            sqlx::SqlitePool::connect(&app.database_url)
                .await
                .expect("raw SQLite"),
        ),
        Backend::Postgres => Raw::Postgres(
            sqlx::PgPool::connect(&app.database_url)
                .await
                .expect("raw PostgreSQL"),
        ),
    }
}

/// One delivery row of `sub`: `status`, last changed `age` ago.
struct Delivery<'a> {
    key: String,
    status: &'a str,
    age: Duration,
}

impl Raw {
    async fn insert_deliveries(&self, project: &str, sub: &str, rows: &[Delivery<'_>]) {
        let now = chrono::Utc::now();
        match self {
            Raw::Sqlite(pool) => {
                let mut tx = pool.begin().await.expect("begin");
                for d in rows {
                    let at = (now - d.age).timestamp_micros();
                    sqlx::query(
                        "INSERT INTO webhook_deliveries (idempotency_key, project_id, \
                         subscription_id, \"trigger\", payload, status, attempt_count, \
                         next_attempt_at, created_at, updated_at) \
                         VALUES (?, ?, ?, 'zoom_oauth_connection.state_change', '{}', ?, 1, \
                         CASE WHEN ? = 'pending' THEN ? END, ?, ?)",
                    )
                    .bind(&d.key)
                    .bind(project)
                    .bind(sub)
                    .bind(d.status)
                    .bind(d.status)
                    .bind((now + DAY).timestamp_micros())
                    .bind(at)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .expect("insert delivery");
                }
                tx.commit().await.expect("commit");
            }
            Raw::Postgres(pool) => {
                let mut tx = pool.begin().await.expect("begin");
                for d in rows {
                    let at = now - d.age;
                    sqlx::query(
                        "INSERT INTO webhook_deliveries (idempotency_key, project_id, \
                         subscription_id, \"trigger\", payload, status, attempt_count, \
                         next_attempt_at, created_at, updated_at) \
                         VALUES ($1, $2, $3, 'zoom_oauth_connection.state_change', '{}', $4, 1, \
                         CASE WHEN $4 = 'pending' THEN $5 END, $6, $6)",
                    )
                    .bind(&d.key)
                    .bind(project)
                    .bind(sub)
                    .bind(d.status)
                    .bind(now + DAY)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .expect("insert delivery");
                }
                tx.commit().await.expect("commit");
            }
        }
    }

    /// An outbox event created `age` ago, fanned out `dispatched` ago (or not yet).
    async fn insert_outbox_event(
        &self,
        project: &str,
        id: &str,
        age: Duration,
        dispatched: Option<Duration>,
    ) {
        let now = chrono::Utc::now();
        match self {
            Raw::Sqlite(pool) => {
                sqlx::query(
                    "INSERT INTO outbox_events (id, project_id, \"trigger\", payload, \
                     created_at, dispatched_at) \
                     VALUES (?, ?, 'zoom_oauth_connection.state_change', '{}', ?, ?)",
                )
                .bind(id)
                .bind(project)
                .bind((now - age).timestamp_micros())
                .bind(dispatched.map(|d| (now - d).timestamp_micros()))
                .execute(pool)
                .await
                .expect("insert outbox event");
            }
            Raw::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO outbox_events (id, project_id, \"trigger\", payload, \
                     created_at, dispatched_at) \
                     VALUES ($1, $2, 'zoom_oauth_connection.state_change', '{}', $3, $4)",
                )
                .bind(id)
                .bind(project)
                .bind(now - age)
                .bind(dispatched.map(|d| now - d))
                .execute(pool)
                .await
                .expect("insert outbox event");
            }
        }
    }
}

async fn old_finished_deliveries_and_fanned_out_events_go_pending_ones_stay(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // The defaults: deliveries 30 days after they finished, events 7 days after
    // they were fanned out.
    assert_eq!(app.keeper.config.webhook_delivery_retention, 30 * DAY);
    assert_eq!(app.keeper.config.outbox_event_retention, 7 * DAY);
    let now = app.keeper.store.now().await.expect("now");
    let sub = keeper::storage::WebhookSubscriptionRow {
        id: keeper::ids::IdKind::WebhookSubscription.generate(),
        project_id: app.project_id.clone(),
        url: "https://example.com/hook".to_owned(),
        triggers: vec!["zoom_oauth_connection.state_change".to_owned()],
        is_active: true,
        created_at: now,
        updated_at: now,
    };
    app.keeper
        .store
        .insert_webhook_subscription(&sub, 10)
        .await
        .expect("subscription");
    let raw = raw(&app).await;
    // More than one batch of long-finished deliveries, so the sweep goes round.
    let mut rows: Vec<Delivery> = (0..u64::from(BATCH) + 20)
        .map(|i| Delivery {
            key: format!("old-{i}"),
            status: if i % 2 == 0 { "success" } else { "failure" },
            age: 31 * DAY,
        })
        .collect();
    let kept = [
        ("recent-success", "success", 29 * DAY),
        ("recent-failure", "failure", DAY),
        // Still retrying, however old: never deleted.
        ("old-pending", "pending", 90 * DAY),
        ("new-pending", "pending", Duration::from_secs(60)),
    ];
    rows.extend(kept.iter().map(|(key, status, age)| Delivery {
        key: (*key).to_owned(),
        status,
        age: *age,
    }));
    raw.insert_deliveries(&app.project_id, &sub.id, &rows).await;
    let p = &app.project_id;
    raw.insert_outbox_event(p, "ev-old", 9 * DAY, Some(8 * DAY))
        .await;
    raw.insert_outbox_event(p, "ev-recent", 9 * DAY, Some(6 * DAY))
        .await;
    // Not fanned out yet (no subscription matched when it was written, or the
    // delivery worker has been down): it stays until it is.
    raw.insert_outbox_event(p, "ev-waiting", 40 * DAY, None)
        .await;

    let first = sweep(&app).await;
    assert_eq!(
        first,
        Sweep {
            webhook_deliveries: u64::from(BATCH) + 20,
            outbox_events: 1,
            ..Sweep::default()
        }
    );
    let left = app
        .keeper
        .store
        .list_webhook_deliveries(
            p,
            &sub.id,
            None,
            &keeper::storage::PageRequest {
                cursor: None,
                limit: 100,
            },
        )
        .await
        .expect("deliveries");
    let mut left_keys: Vec<&str> = left
        .items
        .iter()
        .map(|d| d.idempotency_key.as_str())
        .collect();
    left_keys.sort_unstable();
    let mut expected: Vec<&str> = kept.iter().map(|(key, _, _)| *key).collect();
    expected.sort_unstable();
    assert_eq!(left_keys, expected);
    let mut events: Vec<String> = app
        .keeper
        .store
        .list_outbox_events(p, 100)
        .await
        .expect("outbox")
        .into_iter()
        .map(|e| e.id)
        .collect();
    events.sort_unstable();
    assert_eq!(events, ["ev-recent", "ev-waiting"]);

    // A second sweep finds nothing more to do.
    assert_eq!(sweep(&app).await, Sweep::default());
}

async fn old_bot_platform_calls_and_message_ids_go(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let p = app
        .send(
            app.request(reqwest::Method::POST, "/api/v1/bot_platforms")
                .json(&json!({"platform": "recall"})),
        )
        .await;
    assert_eq!(p.status, 201, "{}", p.text);
    let id = p.json["id"].as_str().expect("id").to_owned();
    let store = &app.keeper.store;
    let now = store.now().await.expect("now");
    let call = |call_id: &str, age: Duration| keeper::storage::BotPlatformCallRow {
        id: call_id.to_owned(),
        platform_id: id.clone(),
        endpoint: "recall_zak".to_owned(),
        status: 200,
        outcome: "minted".to_owned(),
        bot_id: None,
        meeting_id: None,
        minted: json!(["zak_token"]),
        problems: json!([]),
        created_at: now - chrono::Duration::from_std(age).expect("age"),
    };
    let old = housekeeping::BOT_PLATFORM_CALL_RETENTION + DAY;
    store
        .insert_bot_platform_call(&call("bpc_old0000000000001", old), &[])
        .await
        .expect("call");
    store
        .insert_bot_platform_call(&call("bpc_new0000000000001", DAY), &[])
        .await
        .expect("call");
    assert!(store
        .first_use_of_message_id(&id, "msg_1")
        .await
        .expect("first"));
    assert!(!store
        .first_use_of_message_id(&id, "msg_1")
        .await
        .expect("again"));

    // Inside the replay window the id is remembered.
    assert_eq!(sweep(&app).await.bot_platform_logs, 1);
    assert!(!store
        .first_use_of_message_id(&id, "msg_1")
        .await
        .expect("kept"));
    let page = keeper::storage::PageRequest {
        cursor: None,
        limit: 10,
    };
    let left: Vec<String> = store
        .list_bot_platform_calls(&id, &page)
        .await
        .expect("calls")
        .items
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(left, ["bpc_new0000000000001"]);

    // Past it, forgotten: the timestamp check refuses such an old request anyway.
    app.keeper
        .clock
        .advance(keeper::domain::bot_platforms::MESSAGE_ID_MEMORY + Duration::from_secs(1));
    assert_eq!(sweep(&app).await.bot_platform_logs, 1);
    assert!(store
        .first_use_of_message_id(&id, "msg_1")
        .await
        .expect("forgotten"));
}

async fn old_connect_sessions_go(backend: Backend) {
    let Some((app, _, _)) = connected(backend).await else {
        return;
    };
    let create = |return_url: &str| {
        app.send(
            app.request(reqwest::Method::POST, "/api/v1/zoom_oauth_connect_sessions")
                .json(&json!({"return_url": return_url})),
        )
    };
    let old = create("https://example.com/old").await;
    assert_eq!(old.status, 201, "{}", old.text);
    let path = |a: &testkit::Answer| {
        format!(
            "/api/v1/zoom_oauth_connect_sessions/{}",
            a.json["id"].as_str().expect("id")
        )
    };
    app.keeper
        .clock
        .advance(housekeeping::CONNECT_SESSION_RETENTION + DAY);
    let new = create("https://example.com/new").await;
    assert_eq!(sweep(&app).await.connect_sessions, 1);
    let gone = app
        .send(app.request(reqwest::Method::GET, &path(&old)))
        .await;
    assert_eq!(gone.status, 404);
    let kept = app
        .send(app.request(reqwest::Method::GET, &path(&new)))
        .await;
    assert_eq!(kept.json["status"], "pending");
}

/// The kinds of the project's app log lines, newest first.
async fn app_log(app: &TestApp) -> Vec<String> {
    app.send(app.request(reqwest::Method::GET, "/api/v2/zoom-oauth-app-logs/"))
        .await
        .json["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|l| l["kind"].as_str().expect("kind").to_owned())
        .collect()
}

async fn old_app_log_lines_go(backend: Backend) {
    let Some((app, zoa, _)) = connected(backend).await else {
        return;
    };
    assert_eq!(app_log(&app).await, ["created"]);
    app.keeper
        .clock
        .advance(housekeeping::APP_EVENT_RETENTION + DAY);
    app.zoom_app(CLIENT, "another-secret").await;
    let patched = app
        .patch_app(&zoa, json!({"client_secret": "another-secret"}))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(sweep(&app).await.app_events, 1);
    assert_eq!(app_log(&app).await, ["client_secret_changed"]);
}
