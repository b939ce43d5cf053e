//! The re-check after an app's client secret changes (DESIGN.md §4; issue 10) is
//! durable, lease-claimed work, on SQLite and PostgreSQL against the Zoom
//! simulator: the write that stores the secret marks it due, the PATCH's own
//! process runs it at once, and if that process dies first (or mid-re-check) the
//! token keeper's next re-check step does it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use keeper::config::Settings;
use keeper::domain::recheck::{self, LEASE as RECHECK_LEASE};
use keeper::storage::AppSecretsUpdate;
use keeper::vault::Slot;
use serde_json::json;
use testkit::{on_both_databases, spawn_app_with, Backend, TestApp};
use zoom_sim::SimConfig;

on_both_databases!(
    a_patched_client_secret_reconnects_and_leaves_nothing_due,
    a_secret_stored_by_a_process_that_died_is_rechecked_by_the_next_step,
    an_abandoned_recheck_is_done_once_its_lease_runs_out,
    the_token_keeper_loop_runs_due_rechecks,
);

const CLIENT: &str = "recheck-client";
const NEW_SECRET: &str = "rotated-secret-of-recheck-client";

/// A service with one app and one connection that Zoom's secret rotation has
/// disconnected (`invalid_client`, grant kept): (app, app id, connection id).
async fn disconnected_by_a_rotated_secret(
    backend: Backend,
    extra: Settings,
) -> Option<(TestApp, String, String)> {
    let app = spawn_app_with(backend, extra).await?;
    let zoa = app.new_app(CLIENT).await["id"]
        .as_str()
        .expect("app id")
        .to_owned();
    // Tokens under the 120 s floor: every token request refreshes.
    app.sim
        .control()
        .set_config(&SimConfig {
            access_token_ttl_s: Some(100),
            ..Default::default()
        })
        .await
        .expect("sim config");
    let (_, c) = app.connect(CLIENT, json!({})).await;
    assert_eq!(c.status, 201, "{}", c.text);
    let id = c.json["id"].as_str().expect("id").to_owned();
    app.sim
        .control()
        .update_app(
            CLIENT,
            &zoom_sim::SimAppPatch {
                client_secret: Some(NEW_SECRET.to_owned()),
                ..Default::default()
            },
        )
        .await
        .expect("sim update_app");
    app.access_token(&id)
        .await
        .assert_error(409, "connection_disconnected");
    assert_eq!(failure_code(&app, &id).await, "invalid_client");
    Some((app, zoa, id))
}

async fn failure_code(app: &TestApp, id: &str) -> String {
    app.connection(id).await["connection_failure_data"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Stores the new client secret exactly as a PATCH does, but nothing runs the
/// re-check: the process that answered the PATCH died right after its commit.
async fn store_secret_and_die(app: &TestApp, zoa: &str) {
    let sealed = app
        .keeper
        .vault
        .seal(Slot::app_client_secret(zoa), NEW_SECRET.as_bytes());
    let update = AppSecretsUpdate {
        client_secret: Some(sealed),
        webhook_secret: None,
    };
    app.keeper
        .store
        .update_app_secrets(&app.project_id, zoa, &update, Utc::now())
        .await
        .expect("store the secret")
        .expect("the app exists");
}

/// The app's `recheck_due_at`, read from the database.
async fn recheck_due_at(app: &TestApp, zoa: &str) -> Option<DateTime<Utc>> {
    match app.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.database_url)
                .await
                .expect("sqlite");
            let micros: Option<i64> =
                sqlx::query_scalar("SELECT recheck_due_at FROM zoom_oauth_apps WHERE id = ?")
                    .bind(zoa)
                    .fetch_one(&pool)
                    .await
                    .expect("read");
            pool.close().await;
            micros.map(|m| DateTime::from_timestamp_micros(m).expect("in range"))
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.database_url)
                .await
                .expect("postgres");
            let at = sqlx::query_scalar("SELECT recheck_due_at FROM zoom_oauth_apps WHERE id = $1")
                .bind(zoa)
                .fetch_one(&pool)
                .await
                .expect("read");
            pool.close().await;
            at
        }
    }
}

/// Sets the app's `recheck_due_at`, as a process that claimed it and died left it.
async fn set_recheck_due_at(app: &TestApp, zoa: &str, at: DateTime<Utc>) {
    let affected = match app.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.database_url)
                .await
                .expect("sqlite");
            let n = sqlx::query("UPDATE zoom_oauth_apps SET recheck_due_at = ? WHERE id = ?")
                .bind(at.timestamp_micros())
                .bind(zoa)
                .execute(&pool)
                .await
                .expect("write")
                .rows_affected();
            pool.close().await;
            n
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.database_url)
                .await
                .expect("postgres");
            let n = sqlx::query("UPDATE zoom_oauth_apps SET recheck_due_at = $1 WHERE id = $2")
                .bind(at)
                .bind(zoa)
                .execute(&pool)
                .await
                .expect("write")
                .rows_affected();
            pool.close().await;
            n
        }
    };
    assert_eq!(affected, 1);
}

/// Polls until the connection is connected again and the app's re-check is no
/// longer due (the re-check runs in the background after the PATCH answers).
async fn wait_until_reconnected_and_done(app: &TestApp, zoa: &str, id: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let state = app.connection(id).await["state"].clone();
        let due = recheck_due_at(app, zoa).await;
        if state == "connected" && due.is_none() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after 20 s: state {state}, re-check due at {due:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn assert_reconnected_for_good(app: &TestApp, id: &str) {
    let got = app.connection(id).await;
    assert_eq!(got["state"], "connected", "{got}");
    assert!(got["connection_failure_data"].is_null(), "{got}");
    let t = app.access_token(id).await;
    assert_eq!(t.status, 200, "{}", t.text);
    let stats = app.sim.control().stats().await.expect("stats");
    assert_eq!(stats.stale_refresh_token_uses, 0);
}

async fn a_patched_client_secret_reconnects_and_leaves_nothing_due(backend: Backend) {
    let Some((app, zoa, id)) = disconnected_by_a_rotated_secret(backend, Settings::default()).await
    else {
        return;
    };
    assert_eq!(recheck_due_at(&app, &zoa).await, None, "nothing due yet");
    let patched = app
        .patch_app(&zoa, json!({"client_secret": NEW_SECRET}))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    wait_until_reconnected_and_done(&app, &zoa, &id).await;
    assert_reconnected_for_good(&app, &id).await;
    // Nothing left for a worker.
    let step = recheck::run_due_once(&app.keeper).await.expect("step");
    assert!(step.is_none(), "{step:?}");
    // A webhook secret change alone makes nothing due.
    let patched = app
        .patch_app(&zoa, json!({"webhook_secret": "another-webhook-secret"}))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(recheck_due_at(&app, &zoa).await, None);
}

async fn a_secret_stored_by_a_process_that_died_is_rechecked_by_the_next_step(backend: Backend) {
    let Some((app, zoa, id)) = disconnected_by_a_rotated_secret(backend, Settings::default()).await
    else {
        return;
    };
    store_secret_and_die(&app, &zoa).await;
    let due = recheck_due_at(&app, &zoa).await.expect("due");
    assert!(due <= app.keeper.store.now().await.expect("now"));
    assert_eq!(app.connection(&id).await["state"], "disconnected");

    let step = recheck::run_due_once(&app.keeper)
        .await
        .expect("step")
        .expect("a due re-check");
    assert_eq!(step.app_id, zoa);
    let summary = step.summary.expect("it ran");
    assert_eq!(
        (summary.claimed, summary.reconnected),
        (1, 1),
        "{summary:?}"
    );
    assert_reconnected_for_good(&app, &id).await;
    assert_eq!(recheck_due_at(&app, &zoa).await, None, "done, so cleared");
    let step = recheck::run_due_once(&app.keeper).await.expect("step");
    assert!(step.is_none(), "{step:?}");
}

async fn an_abandoned_recheck_is_done_once_its_lease_runs_out(backend: Backend) {
    let Some((app, zoa, id)) = disconnected_by_a_rotated_secret(backend, Settings::default()).await
    else {
        return;
    };
    store_secret_and_die(&app, &zoa).await;
    // Another process claims the re-check...
    let claim = app
        .keeper
        .store
        .claim_app_recheck(None, RECHECK_LEASE)
        .await
        .expect("claim")
        .expect("due");
    assert_eq!(claim.app_id, zoa);
    // ... and while its lease holds, nobody runs the re-check twice.
    let step = recheck::run_due_once(&app.keeper).await.expect("step");
    assert!(step.is_none(), "{step:?}");
    assert_eq!(app.connection(&id).await["state"], "disconnected");

    // It died: its lease ran out a minute ago.
    let now = app.keeper.store.now().await.expect("now");
    set_recheck_due_at(&app, &zoa, now - chrono::Duration::minutes(1)).await;
    let step = recheck::run_due_once(&app.keeper)
        .await
        .expect("step")
        .expect("the abandoned re-check");
    assert_eq!(step.app_id, zoa);
    assert_eq!(step.summary.map(|s| s.reconnected), Some(1));
    assert_reconnected_for_good(&app, &id).await;
    assert_eq!(recheck_due_at(&app, &zoa).await, None);
    // The dead process's claim, were it to wake up, clears nothing of anyone's.
    assert!(!app
        .keeper
        .store
        .finish_app_recheck(&claim, None)
        .await
        .expect("finish"));
}

async fn the_token_keeper_loop_runs_due_rechecks(backend: Backend) {
    let Some((app, zoa, id)) = disconnected_by_a_rotated_secret(
        backend,
        Settings {
            token_keeper_interval: Some("100ms".into()),
            ..Settings::default()
        },
    )
    .await
    else {
        return;
    };
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(keeper::workers::recheck::run(app.keeper.clone(), stopping));
    store_secret_and_die(&app, &zoa).await;
    wait_until_reconnected_and_done(&app, &zoa, &id).await;
    assert_reconnected_for_good(&app, &id).await;
    stop.send(true).expect("the loop listens");
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("stops")
        .expect("no panic");
}
